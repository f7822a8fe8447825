"""The Content-Security-Policy in a real browser: a customer logs in, creates a chatbot with the BYOI panel (htmx
swaps), opens its page, asks a question (the streamed answer comes from static/js) and opens the BYOI settings —
and Chromium reports no violation of the policy anywhere."""

import pytest
from playwright.sync_api import expect

from byoi.services import byoi_set_enabled, component_save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sample || ""));
});
"""


def test_no_page_breaks_the_content_security_policy(page, log_in, live_server, owner, openai_server):
    console = []
    page.on("console", lambda message: console.append(message.text) if message.type in ("error", "warning")
            else None)
    page.add_init_script(RECORD_VIOLATIONS)
    violations = []

    def visit_done():
        violations.extend(page.evaluate("window.__cspViolations || []"))

    log_in(page, owner)
    visit_done()
    page.goto(f"{live_server.url}/dashboard/chatbots/new/")
    page.get_by_label("Name").first.fill("CSP bot")
    page.get_by_role("switch", name="Enable BYOI").check()
    expect(page.get_by_role("switch", name="LLM")).to_be_visible()
    page.get_by_role("switch", name="LLM").check()
    expect(page.get_by_label("API Endpoint").first).to_be_visible()
    visit_done()
    page.get_by_role("switch", name="LLM").uncheck()
    page.get_by_role("button", name="Create chatbot").click()
    page.wait_for_url(f"{live_server.url}/dashboard/chatbots/*/")
    visit_done()
    chatbot_id = page.url.rstrip("/").rsplit("/", 1)[1]
    from chatbots.models import Chatbot

    chatbot = Chatbot.objects.get(pk=chatbot_id)
    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    page.reload()
    page.get_by_label("Your question").fill("Which plans include BYOI?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#chat-output .chat-answer")).to_have_text(openai_server.reply)  # streamed by static js
    visit_done()
    page.goto(f"{live_server.url}/byoi/chatbots/{chatbot_id}/")
    expect(page.get_by_role("switch", name="LLM")).to_be_checked()
    visit_done()
    assert not violations
    assert not [line for line in console if "Content Security Policy" in line or "Refused to" in line]

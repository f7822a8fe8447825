"""Knowledge and chat on the chatbot page in a real browser: paste a document, watch the progress bar finish
(HTMX polling, Celery worker), ask a question and read the streamed answer and its sources."""

import pytest
from playwright.sync_api import expect

from byoi.services import byoi_set_enabled, component_save
from chatbots.services import chatbot_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXT = "BYOI is available on the Pro, Pro+, Business and Enterprise plans. The Free plan does not include BYOI."


def test_it_ingests_and_streams_an_answer_with_sources(page, log_in, live_server, owner, openai_server,
                                                      celery_worker, screenshot):
    chatbot = chatbot_create(owner.membership.account, name="Browser bot", instructions="Be brief.")
    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    log_in(page, owner)
    page.goto(f"{live_server.url}/dashboard/chatbots/{chatbot.id}/")
    page.get_by_label("Title", exact=True).fill("Plans")
    page.get_by_label("Text", exact=True).fill(TEXT)
    page.get_by_role("button", name="Add text").click()
    expect(page.locator("#documents").get_by_text("Ready")).to_be_visible(timeout=90_000)
    page.get_by_label("Your question").fill("Which plans include BYOI?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#chat-output .chat-answer")).to_have_text(openai_server.reply)
    expect(page.locator("#chat-output .chat-sources")).to_contain_text("Plans")
    expect(page.locator("#data-locations")).to_contain_text("Your infrastructure")
    expect(page.locator("#history")).to_contain_text("2 messages")
    expect(page.locator("#data-locations")).to_contain_text("2 messages")
    expect(page.locator("#data-locations")).to_contain_text("1 chunk")
    screenshot(page, "chat-answer-with-sources")

"""The website widget in a real browser: a customer's page, served from a second loopback port, pastes the script
tag pointing at the live server; the bubble opens the chat in an iframe that streams the answer from the default
LLM (a local OpenAI-protocol server) with its sources. Websites not on the chatbot's list get no chat: no session
token for the script, and the frame itself is refused by its `frame-ancestors`.

Screenshots of the open widget go to test-artifacts/screenshots/ (git-ignored). The checks without a browser are in
tests/test_widget.py."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from chatbots.ingestion import document_add, document_ingest
from chatbots.services import chatbot_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXT = "BYOI is available on the Pro, Pro+, Business and Enterprise plans. The Free plan does not include BYOI."
TITLE = "Plans and BYOI"
QUESTION = "Which plans include BYOI?"
FRAME = "iframe[title='Chat']"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Garden Supplies</title>
<style>body {{ font: 16px/1.5 Georgia, serif; margin: 0; color: #1f2937; }}
header {{ background: #14532d; color: #fff; padding: 16px 24px; }} main {{ padding: 8px 24px; max-width: 720px; }}
a {{ color: #15803d; }}</style></head>
<body><header><strong>Acme Garden Supplies</strong> · <a href="#tools" style="color:#fff">Tools</a></header>
<main><h1>Spring catalogue</h1>
<p>Seeds, tools and compost for every garden. Our team answers your questions in the chat below.</p>
<p><a href="#contact">Contact us</a></p>
{body}</main></body></html>"""


@pytest.fixture
def customer_site():
    """customer_site(html) -> origin: a web page of the customer's, served on a new loopback port."""
    servers = []

    def start(html: str) -> str:
        data = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path.split("?")[0] != "/":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):  # noqa: A002
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def default_llm(openai_server, settings):
    """The default LLM (a chatbot without BYOI) is the OpenAI-protocol test server."""
    from byoi.resolver import clear_cache

    openai_server.as_default_llm(settings)
    yield openai_server
    clear_cache()


@pytest.fixture
def bot(owner):
    chatbot = chatbot_create(owner.membership.account, name="Acme helper", instructions="Be brief.")
    document, _ = document_add(chatbot, title=TITLE, text=TEXT, queue=False)
    document_ingest(document.id)
    return chatbot


def allow(chatbot, *origins):
    chatbot.allowed_origins = list(origins)
    chatbot.save(update_fields=["allowed_origins"])


def snippet_page(live_server, chatbot) -> str:
    from chatbots.widget import snippet

    return PAGE.format(body=snippet(live_server.url, chatbot.id))


def framing_page(live_server, chatbot) -> str:
    """A page that puts the chat frame in itself directly, without the script (as a copycat site would)."""
    return PAGE.format(body=f'<iframe id="copy" title="Copied chat" src="{live_server.url}/widget/{chatbot.id}/" '
                            'width="380" height="400"></iframe>')


def chat_frame(page):
    return page.frame_locator(FRAME)


def ask(page, question=QUESTION):
    box = chat_frame(page).get_by_label("Your question")
    box.fill(question)
    box.press("Enter")


def expect_answer(page, llm):
    answer = chat_frame(page).locator(".wz-log li.assistant").last
    try:
        expect(answer).to_contain_text(llm.reply, timeout=60_000)
    except AssertionError as error:  # say what the visitor saw instead (an error line, nothing at all…)
        seen = chat_frame(page).locator(".wz-log").inner_text(timeout=5_000)
        raise AssertionError(f"{error}\nThe chat showed: {seen!r}") from None
    expect(answer.get_by_role("list", name="Sources")).to_contain_text(TITLE)
    return answer


def expect_no_chat(page):
    bubble = page.locator("[data-wizchat=bubble]")
    expect(bubble).to_be_visible()
    bubble.click()
    expect(bubble).to_be_disabled()
    expect(bubble).to_have_attribute("aria-label", "Chat is not available on this website")
    expect(page.locator("iframe")).to_have_count(0)
    expect(page.locator("[data-wizchat=window]")).to_have_count(0)


def expect_frame_refused(page, live_server, console):
    """The copied frame is blocked by the browser: its document is not the chat, and CSP says why."""
    page.wait_for_load_state("load")
    frame = page.frame_locator("#copy")
    expect(frame.locator("body")).to_be_attached()  # Chromium's error page has loaded in its place
    expect(frame.locator(".wz")).to_have_count(0)
    expect(frame.get_by_role("heading")).to_have_count(0)
    [child] = page.main_frame.child_frames
    assert not child.url.startswith(live_server.url), child.url
    refused = [m for m in console if "violates the following Content Security Policy directive" in m
               and "frame-ancestors" in m and f"Framing '{live_server.url}/'" in m]
    assert refused, console


def console_of(page) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    return messages


def test_it_answers_on_an_allowed_website_with_the_streamed_answer_and_its_sources(
        page, live_server, bot, default_llm, customer_site, screenshot):
    origin = customer_site(snippet_page(live_server, bot))
    allow(bot, origin)
    sessions = []
    page.on("response", lambda r: sessions.append(r) if r.url.endswith("/session") else None)
    page.goto(origin + "/")
    bubble = page.get_by_role("button", name="Open chat")
    expect(bubble).to_be_visible()
    expect(bubble).to_have_attribute("aria-expanded", "false")
    bubble.click()
    expect(page.locator(FRAME)).to_be_visible()
    expect(chat_frame(page).get_by_role("heading", name="Acme helper")).to_be_visible()
    expect(page.get_by_role("button", name="Close chat")).to_have_attribute("aria-expanded", "true")
    ask(page)
    answer = expect_answer(page, default_llm)
    expect(chat_frame(page).locator(".wz-log li.user")).to_have_text(QUESTION)
    expect(chat_frame(page).get_by_label("Your question")).to_be_focused()

    assert [r.status for r in sessions] == [200]
    assert sessions[0].headers["access-control-allow-origin"] == origin
    # The token travelled in the fragment and left the frame's address at once; the LLM saw the question.
    frame = page.frame(url=lambda url: url.startswith(f"{live_server.url}/widget/"))
    assert "#" not in frame.url and "wzs_" not in frame.url
    sent = default_llm.calls("/chat/completions")[-1].body
    assert sent["stream"] is True and sent["messages"][-1]["content"] == QUESTION
    assert answer.get_by_role("listitem").filter(has_text=TITLE).count() == 1

    # A second question continues the conversation (the first turn goes with it).
    ask(page, "And the Free plan?")
    expect(chat_frame(page).locator(".wz-log li.assistant")).to_have_count(2)
    expect_answer(page, default_llm)
    roles = [m["role"] for m in default_llm.calls("/chat/completions")[-1].body["messages"]]
    assert roles[-3:] == ["user", "assistant", "user"]
    screenshot(page, "widget-desktop-open")

    # The frame's × closes the window.
    chat_frame(page).get_by_role("button", name="Close chat").click()
    expect(page.locator("[data-wizchat=window]")).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()


def test_it_gives_no_chat_to_a_website_not_on_the_list(page, live_server, bot, customer_site, screenshot):
    allowed = customer_site(framing_page(live_server, bot))  # the customer's own site
    foreign = customer_site(snippet_page(live_server, bot))
    copycat = customer_site(framing_page(live_server, bot))
    allow(bot, allowed)
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url) if r.url.endswith("/session") else None)
    console = console_of(page)

    page.goto(foreign + "/")
    expect_no_chat(page)
    # The server said 403 without Access-Control-Allow-Origin, so the browser kept even that from the script.
    assert failed == [f"{live_server.url}/widget/{bot.id}/session"]
    assert any("No 'Access-Control-Allow-Origin' header" in m for m in console), console
    screenshot(page.locator("[data-wizchat=bubble]"), "widget-foreign-bubble-disabled")

    # The frame itself renders inside the allowed website ...
    page.goto(allowed + "/")
    expect(page.frame_locator("#copy").get_by_role("heading", name="Acme helper")).to_be_visible()
    # ... but not inside another one: frame-ancestors refuses it.
    console.clear()
    page.goto(copycat + "/")
    expect_frame_refused(page, live_server, console)
    assert any(allowed in m for m in console)  # the directive names the one website allowed


def test_it_gives_no_chat_anywhere_when_the_list_is_empty(page, live_server, bot, customer_site):
    site = customer_site(snippet_page(live_server, bot))
    copycat = customer_site(framing_page(live_server, bot))
    assert bot.allowed_origins == []
    page.goto(site + "/")
    expect_no_chat(page)
    console = console_of(page)
    page.goto(copycat + "/")
    expect_frame_refused(page, live_server, console)
    assert any("'none'" in m for m in console)


def test_it_works_with_the_keyboard_alone(page, live_server, bot, default_llm, customer_site):
    origin = customer_site(snippet_page(live_server, bot))
    allow(bot, origin)
    page.goto(origin + "/")
    bubble = page.get_by_role("button", name="Open chat")
    expect(bubble).to_be_visible()
    for _ in range(10):  # past the page's own links to the bubble
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.wizchat === 'bubble'"):
            break
    expect(bubble).to_be_focused()
    page.keyboard.press("Enter")
    question = chat_frame(page).get_by_label("Your question")
    expect(question).to_be_focused()
    page.keyboard.type(QUESTION)
    page.keyboard.press("Enter")
    expect_answer(page, default_llm)
    expect(question).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("[data-wizchat=window]")).to_be_hidden()
    expect(bubble).to_be_focused()
    expect(bubble).to_have_attribute("aria-expanded", "false")
    # Enter opens it again with the conversation still there; Escape closes it again.
    page.keyboard.press("Enter")
    expect(question).to_be_focused()
    expect(chat_frame(page).locator(".wz-log li.assistant")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.locator("[data-wizchat=window]")).to_be_hidden()
    expect(bubble).to_be_focused()


def test_it_fits_a_phone_screen(phone_page, live_server, bot, default_llm, customer_site, screenshot):
    page = phone_page
    origin = customer_site(snippet_page(live_server, bot))
    allow(bot, origin)
    page.goto(origin + "/")
    page.get_by_role("button", name="Open chat").tap()
    ask(page)
    expect_answer(page, default_llm)
    width = page.evaluate("window.innerWidth")
    box = page.locator("[data-wizchat=window]").bounding_box()
    bubble = page.locator("[data-wizchat=bubble]").bounding_box()
    screenshot(page, "widget-phone-open")
    assert width == 390
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= bubble["y"], (box, bubble)  # above the bubble
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    frame = page.frame(url=lambda url: url.startswith(f"{live_server.url}/widget/"))
    assert frame.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    send = chat_frame(page).get_by_role("button", name="Send").bounding_box()
    assert send["x"] + send["width"] <= box["x"] + box["width"]


def test_it_ends_the_chat_when_the_website_is_taken_off_the_list(page, live_server, bot, default_llm,
                                                                 customer_site):
    origin = customer_site(snippet_page(live_server, bot))
    allow(bot, origin)
    page.goto(origin + "/")
    page.get_by_role("button", name="Open chat").click()
    ask(page)
    expect_answer(page, default_llm)
    allow(bot, "https://www.example.com")
    ask(page, "Still there?")
    expect(chat_frame(page).locator(".wz-log li.error")).to_have_text(
        "This chat session has ended. Close the chat and open it again to continue.")
    page.keyboard.press("Escape")
    expect(page.locator("[data-wizchat=window]")).to_be_hidden()
    page.locator("[data-wizchat=bubble]").click()  # a new session is asked for, and refused
    expect(page.locator("[data-wizchat=bubble]")).to_be_disabled()
    expect(page.locator("[data-wizchat=window]")).to_be_hidden()


def test_it_starts_a_new_session_when_the_last_one_ran_out(page, live_server, bot, default_llm, customer_site,
                                                           monkeypatch):
    from chatbots import widget

    monkeypatch.setattr(widget, "SESSION_SECONDS", 2)
    origin = customer_site(snippet_page(live_server, bot))
    allow(bot, origin)
    page.goto(origin + "/")
    bubble = page.get_by_role("button", name="Open chat")
    bubble.click()
    expect(chat_frame(page).get_by_label("Your question")).to_be_focused()
    page.wait_for_timeout(3_500)  # the signature's timestamp counts whole seconds
    ask(page)
    expect(chat_frame(page).locator(".wz-log li.error")).to_contain_text("This chat session has ended.")
    monkeypatch.setattr(widget, "SESSION_SECONDS", 3600)  # the next session lasts (no race with a slow machine)
    page.keyboard.press("Escape")
    expect(bubble).to_be_focused()
    page.keyboard.press("Enter")
    expect(chat_frame(page).locator(".wz-log li")).to_have_count(0)  # a fresh frame with the new session
    ask(page)
    expect_answer(page, default_llm)

"""The dashboard in Debian's chromium: a failed Create Chatbot keeps the secrets (never in the page) and the Test
Connection results; a component's badge turns red on real failing traffic and green again on recovery; the branded
404; every page fits a 390 px phone. Screenshots of each page, desktop and phone, go to test-artifacts/screenshots/."""

import re
import threading
import time

import pytest
from playwright.sync_api import expect

from byoi import activity
from byoi.services import byoi_set_enabled, component_save
from chatbots.apikeys import apikey_create
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import Chatbot, Document
from chatbots.services import chatbot_create
from tests.e2e.test_wizard_browser import enable_byoi, fill_pg, run_test_connection, switch_on
from tests.openai_server import _Handler, _QuietServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_WIDTH = 390


def fits_the_phone(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter(e => e.getBoundingClientRect().right > 391 && getComputedStyle(e).position !== 'absolute')
        .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)""")
    assert width <= PHONE_WIDTH, (page.url, width, wide)


def serve_again(server) -> None:
    """The customer's endpoint comes back, on the same port (the component's settings name it)."""
    class Handler(_Handler):
        state = server

    server._stop.clear()
    server._httpd = _QuietServer((server.host, server.port), Handler)
    threading.Thread(target=server._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()


def ask(page, question: str):
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask").click()


# --- a failed Create Chatbot keeps what was typed ----------------------------------------------------------------


def test_it_keeps_secrets_and_test_results_after_a_failed_create(
        page, log_in, live_server, make_user, celery_worker, openai_server, customer_db, screenshot):
    log_in(page, make_user("draft@example.com", team_name="Draft Co"))
    page.goto(f"{live_server.url}/dashboard/chatbots/new/")
    page.wait_for_load_state("load")
    enable_byoi(page)
    llm = switch_on(page, "llm", "LLM")
    llm.get_by_label("API Endpoint").fill(openai_server.base_url)
    llm.get_by_label("API Key").fill(openai_server.api_key)
    llm.get_by_label("Model Name").fill("gpt-4o-mini")
    run_test_connection(llm, "llm", "Connection OK")
    vectors = switch_on(page, "vector_store", "Vector Store")
    fill_pg(vectors, customer_db)
    run_test_connection(vectors, "vector_store", "Connection OK")

    # Enable BYOI off and on: the fields come back with the values typed, and so do their passing results.
    page.get_by_role("switch", name="Enable BYOI").uncheck()
    expect(page.locator("#byoi-llm")).to_have_count(0)
    page.get_by_role("switch", name="Enable BYOI").check()
    expect(page.locator("#byoi-llm-test")).to_contain_text("Connection OK")
    expect(page.locator("#byoi-vector_store-test")).to_contain_text("Connection OK")
    expect(page.locator("#byoi-panel")).not_to_contain_text("Failed")

    # No name: the page comes back with a summary at the top, focused, linking to the field.
    page.get_by_role("button", name="Create Chatbot").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("There is a problem")
    expect(summary.get_by_role("link", name="Name: Give your chatbot a name.")).to_be_visible()
    html = page.content()
    assert openai_server.api_key not in html
    assert customer_db["password"] not in html
    expect(page.locator("#byoi-llm-test")).to_contain_text("Connection OK")
    expect(page.locator("#byoi-vector_store-test")).to_contain_text("Connection OK")
    expect(page.locator("#byoi-vector_store").get_by_text("Kept from your last attempt")).to_be_visible()
    screenshot(page, "dashboard-create-failed-desktop")

    summary.get_by_role("link", name="Name: Give your chatbot a name.").click()
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    page.get_by_label("Name", exact=True).fill("Kept bot")
    page.get_by_role("button", name="Create Chatbot").click()
    expect(page.get_by_role("heading", name="Kept bot")).to_be_visible()
    for kind in ["llm", "vector_store"]:
        expect(page.locator(f"#byoi-row-{kind} .badge").first).to_have_text("✓ Connected")
    bot = Chatbot.objects.get(name="Kept bot")
    assert bot.components.get(kind="llm").secrets == {"api_key": openai_server.api_key}
    assert bot.components.get(kind="vector_store").secrets == {"password": customer_db["password"]}


def test_it_shows_the_failed_create_on_a_phone(phone_page, log_in, live_server, make_user, screenshot):
    log_in(phone_page, make_user("draft-phone@example.com", team_name="Phone Co"))
    phone_page.goto(f"{live_server.url}/dashboard/chatbots/new/")
    phone_page.wait_for_load_state("load")
    enable_byoi(phone_page)
    vectors = switch_on(phone_page, "vector_store", "Vector Store")
    vectors.get_by_label("Host").fill("db.example.com")
    vectors.get_by_label("Password").fill("typed-on-a-phone")
    phone_page.get_by_role("button", name="Create Chatbot").click()
    expect(phone_page.locator("#error-summary")).to_be_focused()
    assert "typed-on-a-phone" not in phone_page.content()
    fits_the_phone(phone_page)
    screenshot(phone_page, "dashboard-create-failed-phone")


# --- the badge follows real traffic ---------------------------------------------------------------------------


def test_it_turns_the_badge_red_on_failing_traffic_and_green_on_recovery(
        page, log_in, live_server, owner, openai_server, screenshot):
    activity.failing_forget()
    chatbot = chatbot_create(owner.membership.account, name="Traffic bot", instructions="Be brief.")
    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    log_in(page, owner)
    page.goto(f"{live_server.url}/dashboard/chatbots/{chatbot.id}/")
    expect(page.get_by_role("button", name="Start a new conversation")).to_be_hidden()  # no conversation yet
    ask(page, "Hello?")
    expect(page.locator("#chat-output .chat-answer")).to_have_text(openai_server.reply)

    openai_server.stop()  # the customer's LLM goes down
    ask(page, "Still there?")
    expect(page.locator("#chat-output .alert.error")).to_contain_text("refused")
    expect(page.locator("#chat-output .chat-answer")).to_have_count(0)  # no empty answer above the error
    page.reload()
    badge = page.locator("#byoi-llm-badge")
    expect(badge).to_contain_text(re.compile(r"Failing since \d\d:\d\d — refused"))
    expect(page.locator("#byoi-row-llm")).to_contain_text("while answering")
    expect(page.locator("#byoi-row-llm").get_by_role("button", name="Re-test")).to_be_visible()
    screenshot(page.locator("#byoi-status"), "dashboard-badge-failing")

    serve_again(openai_server)
    deadline = time.monotonic() + 30
    while True:  # after a failure WizChat may wait a few seconds before calling the LLM again
        ask(page, "Back?")  # the Ask button is disabled until the answer or the error has come
        expect(page.get_by_role("button", name="Ask")).to_be_enabled(timeout=30_000)
        if page.locator("#chat-output .alert.error").count() == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    expect(page.locator("#chat-output .chat-answer")).to_have_text(openai_server.reply)
    page.reload()
    expect(page.locator("#byoi-llm-badge")).to_have_text("✓ Connected")
    expect(page.locator("#byoi-row-llm")).to_contain_text("Working again")
    screenshot(page.locator("#byoi-status"), "dashboard-badge-recovered")


# --- error pages ----------------------------------------------------------------------------------------------------


def test_it_shows_the_branded_404_page(page, phone_page, log_in, live_server, owner, screenshot):
    log_in(page, owner)
    response = page.goto(f"{live_server.url}/dashboard/chatbots/00000000-0000-0000-0000-000000000000/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="This page does not exist")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    screenshot(page, "dashboard-404-desktop")
    phone_page.goto(f"{live_server.url}/no/such/page/")
    expect(phone_page.get_by_role("heading", name="This page does not exist")).to_be_visible()
    fits_the_phone(phone_page)
    screenshot(phone_page, "dashboard-404-phone")


def test_it_serves_the_favicon(page, live_server, db):
    response = page.goto(f"{live_server.url}/favicon.ico")
    assert response.status == 200
    assert "svg" in response.headers["content-type"]


# --- every page on a phone and on a laptop ---------------------------------------------------------------------------


@pytest.fixture
def full_bot(owner, openai_server):
    """A chatbot with everything on its page: BYOI components with long addresses, documents (ready and failed),
    an API key and allowed websites."""
    account = owner.membership.account
    bot = chatbot_create(account, name="Customer support assistant for the EMEA region",
                         instructions="Answer briefly, in English. Cite the documents.")
    component_save(bot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(bot, True)
    ready, _ = document_add(bot, title="Plans and pricing overview for enterprise customers",
                            text="BYOI is available on the Pro, Pro+, Business and Enterprise plans.", queue=False)
    document_ingest(ready.id)
    # Saved after the ingestion: its long address does not resolve, so its count shows an error (long text too).
    component_save(bot, "vector_store", values={"host": "vectors-primary.eu-west-1.customer-example-corp.com",
                                                "port": 5432, "database": "wizchat_vectors_production",
                                                "username": "wizchat_service", "ssl_mode": "verify-full"},
                   secrets={"password": "not-used-here"})
    failed, _ = document_add(bot, title="A very long document title that keeps going to test the layout on phones",
                             text="Some text that failed.", queue=False)
    Document.objects.filter(pk=failed.pk).update(status="failed", error_code="refused",
                                                 error_message="Vector Store (Your infrastructure) failed: refused.")
    apikey_create(bot, name="Production website backend")
    bot.allowed_origins = ["https://www.customer-example-corp.com"]
    bot.save(update_fields=["allowed_origins"])
    return bot


PAGES = [
    ("list", "/dashboard/chatbots/"),
    ("create", "/dashboard/chatbots/new/"),
    ("detail", "/dashboard/chatbots/{bot}/"),
    ("edit", "/dashboard/chatbots/{bot}/edit/"),
    ("byoi-settings", "/byoi/chatbots/{bot}/"),
    ("plan", "/account/plan/"),
    ("account", "/account/"),
    ("team", "/account/team/"),
    ("api-keys", "/dashboard/api-keys/"),
    ("docs", "/docs/"),
]


def open_page(page, url, name):
    page.goto(url)
    page.wait_for_load_state("load")
    if name == "detail":  # the panels that load after the page
        expect(page.locator("#data-locations")).to_contain_text("Refresh counts", timeout=30_000)
        expect(page.locator("#history")).not_to_contain_text("Loading", timeout=30_000)
    if name == "create":
        enable_byoi(page)
        for kind, label in [("llm", "LLM"), ("vector_store", "Vector Store"), ("graph", "FalkorDB")]:
            switch_on(page, kind, label)


@pytest.mark.parametrize("name, path", PAGES, ids=[name for name, _ in PAGES])
def test_it_fits_every_page_on_a_phone(phone_page, log_in, live_server, owner, full_bot, screenshot, name, path):
    log_in(phone_page, owner)
    open_page(phone_page, live_server.url + path.format(bot=full_bot.id), name)
    fits_the_phone(phone_page)
    screenshot(phone_page, f"dashboard-{name}-phone")


@pytest.mark.parametrize("name, path", PAGES, ids=[name for name, _ in PAGES])
def test_it_shows_every_page_on_a_laptop(page, log_in, live_server, owner, full_bot, screenshot, name, path):
    log_in(page, owner)
    open_page(page, live_server.url + path.format(bot=full_bot.id), name)
    expect(page.locator(".breadcrumbs")).to_be_visible()
    screenshot(page, f"dashboard-{name}-desktop")

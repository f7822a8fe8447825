"""The spec's "Setting Up BYOI" in a real browser: a live server, a real Celery worker and real peers.

Screenshots of each state go to test-artifacts/screenshots/ (git-ignored)."""

import re

import pytest
from playwright.sync_api import expect

from chatbots.models import Chatbot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WRONG = "wrong-password-123"


def open_create_page(page, live_server):
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Chatbots").click()
    page.get_by_role("link", name="Create New Chatbot").click()
    expect(page.get_by_role("heading", name="Create New Chatbot")).to_be_visible()
    page.wait_for_load_state("load")  # htmx is deferred: it binds the switches on DOMContentLoaded


@pytest.fixture
def open_create_page_as(page, live_server, log_in, make_user):
    """Log a new user in and open Create New Chatbot."""
    def open_as(email, **user):
        log_in(page, make_user(email, **user))
        open_create_page(page, live_server)
    return open_as


def enable_byoi(page):
    page.get_by_role("switch", name="Enable BYOI").check()
    expect(page.get_by_role("switch", name=re.compile("^LLM"))).to_be_visible()


def switch_on(page, kind, label):
    page.get_by_role("switch", name=re.compile(f"^{label}")).check()
    fields = page.locator(f"#byoi-{kind}-fields")
    expect(fields).to_be_visible()
    return page.locator(f"#byoi-{kind}")


def fill_pg(section, db, password=None):
    section.get_by_label("Host").fill(db["host"])
    section.get_by_label("Port").fill(str(db["port"]))
    section.get_by_label("Database").fill(db["database"])
    section.get_by_label("Username").fill(db["username"])
    section.get_by_label("Password").fill(password or db["password"])
    section.get_by_label("SSL Mode").select_option(db["ssl_mode"])


def run_test_connection(section, kind, expected):
    section.get_by_role("button", name="Test Connection").click()
    result = section.locator(f"#byoi-{kind}-test")
    expect(result).to_contain_text(expected, timeout=60_000)
    return result


def test_it_sets_up_byoi_in_the_browser_and_shows_green_checkmarks(
        page, open_create_page_as, celery_worker, openai_server, customer_db, screenshot):
    open_create_page_as("browser@example.com", team_name="Browser Co")
    page.get_by_label("Name", exact=True).fill("Support bot")
    page.get_by_label("Instructions").fill("Answer briefly.")
    screenshot(page, "01-create-page")

    enable_byoi(page)
    screenshot(page, "02-byoi-enabled")

    llm = switch_on(page, "llm", "LLM")
    llm.get_by_label("API Endpoint").fill(openai_server.base_url)
    llm.get_by_label("API Key").fill(openai_server.api_key)
    llm.get_by_label("Model Name").fill("gpt-4o-mini")
    run_test_connection(llm, "llm", "Connection OK")
    screenshot(page, "03-llm-test-green")

    vectors = switch_on(page, "vector_store", "Vector Store")
    fill_pg(vectors, customer_db, password=WRONG)
    failed = run_test_connection(vectors, "vector_store", "Connection failed")
    expect(failed).to_contain_text("Authentication Failed: verify the API key or password")
    expect(failed.locator(".step-failed")).to_contain_text("Authentication")
    screenshot(page, "04-vector-store-wrong-password")

    vectors.get_by_label("Password").fill(customer_db["password"])
    expect(vectors.locator("#byoi-vector_store-test")).to_have_class(re.compile(r"\bstale\b"))
    screenshot(vectors, "04b-vector-store-result-stale")
    run_test_connection(vectors, "vector_store", "Connection OK")
    expect(vectors.locator("#byoi-vector_store-test")).not_to_have_class(re.compile(r"\bstale\b"))

    conversations = switch_on(page, "conversations", "Conversations")
    fill_pg(conversations, customer_db)
    run_test_connection(conversations, "conversations", "Connection OK")
    # The LLM's fields survived the other switches being flipped.
    expect(llm.get_by_label("API Endpoint")).to_have_value(openai_server.base_url)
    screenshot(page, "05-all-tested")

    page.get_by_role("button", name="Create Chatbot").click()
    expect(page.get_by_role("heading", name="Support bot")).to_be_visible()
    for kind in ["llm", "vector_store", "conversations"]:
        expect(page.locator(f"#byoi-row-{kind} .badge")).to_have_text("✓ Connected")
    for kind in ["embeddings", "graph"]:
        expect(page.locator(f"#byoi-row-{kind} .badge")).to_have_text("WizChat default")
    body = page.content()
    assert customer_db["password"] not in body
    assert openai_server.api_key not in body
    screenshot(page, "06-chatbot-page-checkmarks")

    page.locator("#byoi-row-llm").get_by_role("button", name="Re-test").click()
    expect(page.locator("#byoi-llm-test")).to_contain_text("Connection OK", timeout=60_000)
    screenshot(page.locator("#byoi-status"), "07-chatbot-page-retest")
    assert Chatbot.objects.get(name="Support bot").components.filter(status="ok").count() == 3


def test_it_shows_the_untested_warning_and_a_red_cross_after_a_failed_re_test(
        page, open_create_page_as, celery_worker, customer_db, screenshot):
    open_create_page_as("untested@example.com", team_name="Untested Co")
    page.get_by_label("Name", exact=True).fill("Untested bot")
    enable_byoi(page)
    vectors = switch_on(page, "vector_store", "Vector Store")
    fill_pg(vectors, customer_db, password=WRONG)
    page.get_by_role("button", name="Create Chatbot").click()
    expect(page.get_by_text("Saved untested: Vector Store")).to_be_visible()
    expect(page.locator("#byoi-row-vector_store .badge")).to_have_text("Untested")
    page.locator("#byoi-row-vector_store").get_by_role("button", name="Re-test").click()
    expect(page.locator("#byoi-vector_store-test")).to_contain_text("Authentication Failed", timeout=60_000)
    expect(page.locator("#byoi-row-vector_store .badge").first).to_have_text("✗ Failed")
    screenshot(page.locator("#byoi-status"), "08-chatbot-page-failed-retest")


def test_it_shows_errors_next_to_fields_and_never_the_password(page, open_create_page_as, screenshot):
    open_create_page_as("errors@example.com", team_name="Errors Co")
    enable_byoi(page)
    vectors = switch_on(page, "vector_store", "Vector Store")
    vectors.get_by_label("Host").fill("db.example.com")
    vectors.get_by_label("Password").fill("typed-secret-value")
    page.get_by_role("button", name="Create Chatbot").click()
    expect(page.locator(".field-error", has_text="Give your chatbot a name.")).to_be_visible()
    vectors = page.locator("#byoi-vector_store")
    expect(vectors.get_by_label("Host")).to_have_value("db.example.com")
    expect(vectors.get_by_label("Password")).to_have_value("")
    assert "typed-secret-value" not in page.content()
    screenshot(page, "09-create-errors")


def test_it_operates_the_switches_with_the_keyboard(page, open_create_page_as):
    open_create_page_as("keys@example.com", team_name="Keys Co")
    enable = page.get_by_role("switch", name="Enable BYOI")
    enable.focus()
    expect(enable).to_be_focused()
    page.keyboard.press("Space")
    llm_switch = page.get_by_role("switch", name=re.compile("^LLM"))
    expect(llm_switch).to_be_visible()
    llm_switch.focus()
    page.keyboard.press("Space")
    expect(page.locator("#byoi-llm-fields").get_by_label("API Endpoint")).to_be_visible()
    expect(page.get_by_role("switch", name=re.compile("^LLM"))).to_be_checked()


def test_it_sends_the_request_of_a_switch_flipped_the_instant_it_appears(page, open_create_page_as):
    # A MutationObserver clicks the LLM switch in the same task that inserted it, before any timer can run:
    # the switch only works if htmx binds new controls during the swap rather than after a settle delay.
    open_create_page_as("instant@example.com", team_name="Instant Co")
    page.evaluate("""() => new MutationObserver((changes, observer) => {
        const llm = document.querySelector("#byoi-llm input[role=switch]");
        if (llm) { observer.disconnect(); llm.click(); }
    }).observe(document.body, {childList: true, subtree: true})""")
    page.get_by_role("switch", name="Enable BYOI").check()
    expect(page.locator("#byoi-llm-fields").get_by_label("API Endpoint")).to_be_visible()


def test_it_keeps_what_was_typed_when_switches_go_off_and_on_again(page, open_create_page_as):
    open_create_page_as("flip@example.com", team_name="Flip Co")
    enable_byoi(page)
    vectors = switch_on(page, "vector_store", "Vector Store")
    vectors.get_by_label("Host").fill("vectors.example.com")
    vectors.get_by_label("Port").fill("6543")
    vectors.get_by_label("Password").fill("typed-secret")
    llm = switch_on(page, "llm", "LLM")
    llm.get_by_label("API Endpoint").fill("https://llm.example.com/v1")

    page.get_by_role("switch", name="Enable BYOI").uncheck()
    expect(page.locator("#byoi-vector_store")).to_have_count(0)
    page.get_by_role("switch", name="Enable BYOI").check()
    vectors = page.locator("#byoi-vector_store-fields")
    expect(vectors.get_by_label("Host")).to_have_value("vectors.example.com")
    expect(vectors.get_by_label("Port")).to_have_value("6543")
    expect(vectors.get_by_label("Password")).to_have_value("typed-secret")
    expect(page.locator("#byoi-llm-fields").get_by_label("API Endpoint")).to_have_value("https://llm.example.com/v1")
    expect(page.get_by_role("switch", name=re.compile("^Embeddings"))).not_to_be_checked()

    page.get_by_role("switch", name=re.compile("^Vector Store")).uncheck()
    expect(page.locator("#byoi-vector_store-fields")).to_have_count(0)
    switch_on(page, "vector_store", "Vector Store")
    expect(page.locator("#byoi-vector_store-fields").get_by_label("Host")).to_have_value("vectors.example.com")


def test_it_shows_the_panel_locked_for_a_free_account(page, open_create_page_as, screenshot):
    open_create_page_as("free-browser@example.com", plan="free", team_name="Free Co")
    panel = page.locator("#byoi-panel")
    expect(panel).to_contain_text("BYOI is available on the Pro, Pro+, Business, and Enterprise plans.")
    expect(page.get_by_role("switch", name="Enable BYOI")).to_have_count(0)
    screenshot(page, "10-free-plan-locked")


def test_it_is_readable_on_a_phone(phone_page, live_server, log_in, make_user, celery_worker, customer_db,
                                   screenshot):
    page = phone_page
    user = make_user("phone@example.com", team_name="Phone Co")
    log_in(page, user)
    page.goto(f"{live_server.url}/dashboard/chatbots/new/")
    enable_byoi(page)
    vectors = switch_on(page, "vector_store", "Vector Store")
    fill_pg(vectors, customer_db)
    run_test_connection(vectors, "vector_store", "Connection OK")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    screenshot(page, "11-phone-create")
    screenshot(vectors, "11b-phone-vector-store-tested")
    assert overflow <= 0
    page.get_by_label("Name", exact=True).fill("Phone bot")
    page.get_by_role("button", name="Create Chatbot").click()
    expect(page.get_by_role("heading", name="Phone bot")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    screenshot(page, "12-phone-chatbot-page")
    screenshot(page.locator("#byoi-status"), "12b-phone-chatbot-page-status")
    assert overflow <= 0


def test_it_changes_and_disables_byoi_later_on_an_existing_chatbot(
        page, live_server, log_in, make_user, customer_db, screenshot):
    from byoi import services
    from chatbots.services import chatbot_create

    user = make_user("later@example.com", team_name="Later Co")
    bot = chatbot_create(user.membership.account, name="Existing bot")
    services.byoi_set_enabled(bot, True)
    services.component_save(bot, "vector_store", values={k: v for k, v in customer_db.items() if k != "password"},
                            secrets={"password": customer_db["password"]})
    log_in(page, user)
    page.goto(f"{live_server.url}/dashboard/chatbots/{bot.id}/")
    page.get_by_role("link", name="BYOI settings").click()
    vectors = page.locator("#byoi-vector_store")
    expect(vectors.get_by_label("Host")).to_have_value("127.0.0.1")
    expect(vectors.get_by_label("Password")).to_have_value("")
    expect(vectors).to_contain_text("Stored — leave blank to keep it")
    assert customer_db["password"] not in page.content()
    screenshot(page, "13-byoi-settings")

    vectors.get_by_label("Host").fill("localhost")
    page.get_by_role("button", name="Save BYOI settings").click()
    expect(page.locator("#byoi-vector_store")).to_contain_text("Re-enter the password: the host changed.")
    screenshot(page.locator("#byoi-vector_store"), "14-byoi-settings-reenter-password")

    page.locator("#byoi-vector_store").get_by_label("Password").fill(customer_db["password"])
    page.get_by_role("button", name="Save BYOI settings").click()
    expect(page.get_by_text("BYOI settings saved.")).to_be_visible()
    expect(page.locator("#byoi-row-vector_store")).to_contain_text("localhost")

    page.get_by_role("link", name="BYOI settings").click()
    page.wait_for_load_state("load")
    log = page.locator("#connection-log")
    expect(log.locator("tbody tr").first).to_contain_text("Vector Store settings saved (changed: Host)")
    expect(log.locator("tbody tr").first).to_contain_text("later@example.com")
    screenshot(log, "17-connection-log")
    page.get_by_role("switch", name=re.compile("^Vector Store")).uncheck()
    warning = page.locator("#byoi-vector_store .alert.warn")
    expect(warning).to_contain_text("Data already in your infrastructure stays there and is not copied to WizChat")
    expect(warning).not_to_contain_text("manage.py")
    screenshot(page.locator("#byoi-panel"), "15-byoi-settings-disable-warning")
    page.get_by_role("button", name="Save BYOI settings").click()
    expect(page.get_by_text("Now using WizChat defaults for: Vector Store")).to_be_visible()
    expect(page.locator("#byoi-row-vector_store .badge")).to_have_text("WizChat default")


def test_it_creates_a_chatbot_with_byoi_without_javascript(browser, live_server, make_user, customer_db, screenshot):
    from tests.e2e.conftest import LAPTOP, PASSWORD

    user = make_user("nojs@example.com", team_name="NoJS Co")
    context = browser.new_context(viewport=LAPTOP, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{live_server.url}/dashboard/chatbots/new/")
        page.get_by_label("Name", exact=True).fill("No-JS bot")
        page.get_by_role("switch", name="Enable BYOI").check()
        page.get_by_role("button", name="Show the BYOI fields I switched on").click()
        page.get_by_role("switch", name=re.compile("^Vector Store")).check()
        page.get_by_role("button", name="Show the BYOI fields I switched on").click()
        vectors = page.locator("#byoi-vector_store")
        expect(page.get_by_label("Name", exact=True)).to_have_value("No-JS bot")
        fill_pg(vectors, customer_db)
        expect(vectors.get_by_role("button", name="Test Connection")).to_be_hidden()
        screenshot(page, "16-no-javascript-create")
        vectors.get_by_label("Database").press("Enter")  # Enter saves; it does not re-show the BYOI fields
        expect(page.get_by_role("heading", name="No-JS bot")).to_be_visible()
        expect(page.locator("#byoi-row-vector_store .badge")).to_have_text("Untested")
    finally:
        context.close()

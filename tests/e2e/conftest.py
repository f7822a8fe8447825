"""Browser fixtures: Playwright for Python driving Debian's chromium (never a downloaded browser).

The live server runs in a thread of this process while Playwright's sync API runs an event loop here, so
Django's async-safety guard is relaxed for these tests only."""

import importlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def plans(transactional_db):
    """The plans, seeded as the data migration does: a transactional test before this one flushed them."""
    from django.apps import apps

    importlib.import_module("wizchat.migrations.0002_seed_plans").seed(apps, None)


def pytest_collection_modifyitems(config, items):
    """WIZCHAT_SKIP_BROWSER=1 is the only way to leave the browser tests out; pytest's summary (-ra) says so."""
    if os.environ.get("WIZCHAT_SKIP_BROWSER") != "1":
        return
    skip = pytest.mark.skip(reason="WIZCHAT_SKIP_BROWSER=1: browser tests not run")
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        # An error, never a skip: a browser test that did not run must not look like a pass.
        pytest.fail(f"Debian's chromium is not installed at {CHROMIUM}: apt-get install chromium (make test does "
                    "it as root), or set WIZCHAT_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def phone_page(browser):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot():
    """screenshot(page_or_locator, name): save a PNG under test-artifacts/screenshots/ and return its path.

    A page is shot whole (full page); a locator only its element, readable at phone width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(target, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        if hasattr(target, "goto"):
            target.screenshot(path=str(path), full_page=True)
        else:
            # Clip the full page to the element: an element shot in a mobile context cuts at the viewport.
            target.page.evaluate("window.scrollTo(0, 0)")
            box = target.bounding_box()
            target.page.screenshot(path=str(path), full_page=True, clip=box)
        return path

    return take


@pytest.fixture
def log_in(live_server):
    """log_in(page, user): the login form, as a customer would use it."""

    def go(page, user):
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{live_server.url}/dashboard/chatbots/")

    return go

"""The team in Debian's chromium: an owner creates an invite link (shown once, with Copy), a visitor opens it,
signs up and lands in the team as a member, who sees the chatbot but none of the owners' and admins' controls."""

import pytest
from playwright.sync_api import expect

from chatbots.services import chatbot_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_invited_visitor_joins_as_a_member_and_sees_no_edit_controls(page, browser, log_in, live_server, make_user,
                                                                         screenshot):
    owner = make_user("boss@example.com", team_name="Browser Co")
    bot = chatbot_create(owner.membership.account, name="Helpdesk", instructions="")
    log_in(page, owner)
    page.goto(f"{live_server.url}/account/team/")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Create invite link").click()
    link = page.get_by_label("The new invite link")
    expect(link).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    url = link.input_value()
    assert url.startswith(f"{live_server.url}/invite/")
    screenshot(page, "team-invite-created")

    visitor = browser.new_context()
    guest = visitor.new_page()
    try:
        guest.goto(url)
        expect(guest.get_by_role("heading", name="Join Browser Co")).to_be_visible()
        guest.get_by_label("Email").fill("newbie@example.com")
        guest.get_by_label("Password").fill("a long enough passphrase")
        guest.get_by_role("button", name="Sign up and join").click()
        guest.wait_for_url(f"{live_server.url}/dashboard/chatbots/")
        expect(guest.get_by_text("Welcome to Browser Co.")).to_be_visible()
        expect(guest.get_by_role("link", name="Create New Chatbot")).to_have_count(0)
        guest.get_by_role("link", name="Helpdesk").click()
        expect(guest.get_by_role("heading", name="Helpdesk", exact=True)).to_be_visible()
        for name in ("Edit", "Delete", "Deploy", "Create key", "Save websites"):
            expect(guest.get_by_role("button", name=name, exact=True)).to_have_count(0)
            expect(guest.get_by_role("link", name=name, exact=True)).to_have_count(0)
        expect(guest.get_by_role("button", name="Upload")).to_be_visible()
        screenshot(guest, "team-member-chatbot-page")

        guest.goto(url)  # the link worked once
        expect(guest.get_by_text("This invite link was already used")).to_be_visible()
    finally:
        visitor.close()

    page.goto(f"{live_server.url}/account/team/")
    row = page.locator("li[data-role=member]")
    expect(row).to_contain_text("newbie@example.com")
    expect(page.get_by_text("Pending invites")).to_have_count(0)
    assert bot.account_id == owner.membership.account_id

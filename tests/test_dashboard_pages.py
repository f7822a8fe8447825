"""The pages a product has: branded error pages, a favicon, navigation to account, team, plan, API keys and docs,
breadcrumbs that follow the page, the plan page with usage and an upgrade request staff see in the admin — in
words for customers, never operators' commands."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from byoi.services import byoi_set_enabled
from chatbots.apikeys import apikey_create
from chatbots.services import chatbot_create
from wizchat.models import Plan, UpgradeRequest


@pytest.fixture
def staff_client(db):
    admin = get_user_model().objects.create_superuser("staff@example.com", "staff@example.com", "staff pass 123!")
    client = Client()
    client.force_login(admin)
    return client


def page(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def breadcrumb(body: str) -> list[str]:
    nav = body[body.index('class="breadcrumbs"'):]
    nav = nav[:nav.index("</nav>")]
    return [re.sub(r"<[^>]+>", "", item).strip() for item in re.findall(r"<li[^>]*>(.*?)</li>", nav, re.S)]


# --- error pages and favicon ---------------------------------------------------------------------------------------


def test_it_answers_an_unknown_address_with_the_branded_404_page(owner_client):
    response = owner_client.get("/no/such/page/")
    body = response.content.decode()
    assert response.status_code == 404
    assert "This page does not exist" in body
    assert 'aria-label="Main"' in body
    assert "Go to your chatbots" in body


def test_it_answers_another_accounts_chatbot_with_the_same_404_page(owner_client, outsider):
    other = chatbot_create(outsider.membership.account, name="Not yours", instructions="")
    response = owner_client.get(f"/dashboard/chatbots/{other.id}/")
    assert response.status_code == 404
    assert "This page does not exist" in response.content.decode()
    assert "Not yours" not in response.content.decode()


def test_it_shows_the_404_page_to_visitors_with_a_log_in_link(client, db):
    body = client.get("/no/such/page/").content.decode()
    assert "This page does not exist" in body
    assert "Log in" in body


def test_it_renders_the_branded_500_page_without_the_database(db, django_assert_num_queries):
    from wizchat import urls
    from wizchat.views import server_error

    with django_assert_num_queries(0):
        response = server_error(RequestFactory().get("/"))
    assert urls.handler500 == "wizchat.views.server_error"
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
    assert "favicon.svg" in response.content.decode()


def test_it_links_a_favicon_from_every_page(client, db):
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page(client, "/login/")


def test_it_redirects_the_browsers_default_favicon_address(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"


# --- navigation and breadcrumbs -----------------------------------------------------------------------------------


def test_it_reaches_account_team_plan_api_keys_and_docs_from_the_header(owner_client):
    body = page(owner_client, "/dashboard/chatbots/")
    header = body[body.index('<header'):body.index('</header>')]
    for url in ["/dashboard/chatbots/", "/dashboard/api-keys/", "/docs/", "/account/plan/", "/account/team/",
                "/account/"]:
        assert f'href="{url}"' in header


def test_it_marks_the_current_section_in_the_header(owner_client):
    body = page(owner_client, "/account/plan/")
    assert re.search(r'href="/account/plan/"[^>]*aria-current="page"', body)


@pytest.mark.parametrize("url, crumbs", [
    ("/dashboard/chatbots/", ["Dashboard", "Chatbots"]),
    ("/dashboard/chatbots/new/", ["Dashboard", "Chatbots", "Create New Chatbot"]),
    ("/account/", ["Dashboard", "Account"]),
    ("/account/plan/", ["Dashboard", "Account", "Plan"]),
    ("/account/team/", ["Dashboard", "Account", "Team"]),
    ("/dashboard/api-keys/", ["Dashboard", "API keys"]),
    ("/docs/", ["Docs"]),
])
def test_it_shows_a_breadcrumb_that_follows_the_page(owner_client, url, crumbs):
    assert breadcrumb(page(owner_client, url)) == crumbs


@pytest.mark.parametrize("suffix, last", [("", None), ("edit/", "Edit"), ("delete/", "Delete")])
def test_it_puts_the_chatbot_in_the_breadcrumb_of_its_pages(owner_client, chatbot, suffix, last):
    crumbs = breadcrumb(page(owner_client, f"/dashboard/chatbots/{chatbot.id}/{suffix}"))
    assert crumbs == ["Dashboard", "Chatbots", "Support bot"] + ([last] if last else [])


def test_it_puts_byoi_settings_in_the_breadcrumb(owner_client, chatbot):
    crumbs = breadcrumb(page(owner_client, f"/byoi/chatbots/{chatbot.id}/"))
    assert crumbs == ["Dashboard", "Chatbots", "Support bot", "BYOI settings"]


# --- account, team, API keys, docs ----------------------------------------------------------------------------------


def test_it_shows_the_account(owner_client):
    body = page(owner_client, "/account/")
    assert "owner@example.com" in body
    assert "Owner of Acme" in body
    assert 'href="/account/password/"' in body


def test_it_changes_the_password_from_the_account_page(owner_client, owner):
    response = owner_client.post("/account/password/", {"old_password": "correct horse battery",
                                                        "new_password1": "a brand new passphrase 42",
                                                        "new_password2": "a brand new passphrase 42"})
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("a brand new passphrase 42")


def test_it_lists_the_team_members_and_no_one_else(owner_client, teammate, outsider):
    body = page(owner_client, "/account/team/")
    assert "owner@example.com" in body
    assert "mate@example.com" in body
    assert "outsider@example.com" not in body


def test_it_lists_each_chatbot_with_its_keys_and_a_link_to_manage_them(owner_client, chatbot, outsider):
    apikey_create(chatbot, name="Production")
    chatbot_create(outsider.membership.account, name="Not yours", instructions="")
    body = page(owner_client, "/dashboard/api-keys/")
    assert "1 key in use" in body
    assert f'href="/dashboard/chatbots/{chatbot.id}/#api_keys"' in body
    assert "Not yours" not in body


def test_it_serves_the_docs_to_everyone(client, db):
    body = page(client, "/docs/")
    assert "BYOI: bring your own infrastructure" in body
    assert "/v1/chat/completions" in body


@pytest.mark.parametrize("url", ["/account/", "/account/team/", "/account/plan/", "/dashboard/api-keys/"])
def test_it_requires_a_login_for_account_pages(client, db, url):
    assert client.get(url).status_code == 302


# --- plan ---------------------------------------------------------------------------------------------------------


def test_it_shows_the_plan_with_its_limits_and_usage(owner_client, chatbot):
    body = page(owner_client, "/account/plan/")
    assert "Acme is on the Pro plan" in body
    usage = body[body.index('class="usage"'):body.index("</ul>", body.index('class="usage"'))]
    assert "Chatbots" in usage and "1 of 5" in usage
    assert "Documents per chatbot" in usage and "0 of 100" in usage
    assert "Messages this month" in usage and "0 of 5,000" in usage
    assert "API keys per chatbot" in usage


def test_it_shows_what_each_plan_includes(owner_client):
    body = page(owner_client, "/account/plan/")
    for plan in Plan.objects.all():
        assert f'id="plan-{plan.slug}"' in body
    enterprise = body[body.index('id="plan-enterprise"'):]
    assert "1,000,000 messages a month" in enterprise
    assert "BYOI" in enterprise


def test_it_records_an_upgrade_request_for_staff(owner_client, owner):
    response = owner_client.post("/account/plan/", {"plan": "business", "message": "We need 20 chatbots."})
    request = UpgradeRequest.objects.get()
    assert response.status_code == 302
    assert request.account == owner.membership.account
    assert request.plan.slug == "business" and request.current_plan.slug == "pro"
    assert request.requested_by == owner
    assert "your request is with our team" in page(owner_client, "/account/plan/")


def test_it_updates_the_open_request_instead_of_adding_another(owner_client):
    owner_client.post("/account/plan/", {"plan": "business"})
    owner_client.post("/account/plan/", {"plan": "enterprise"})
    assert UpgradeRequest.objects.get().plan.slug == "enterprise"


def test_it_refuses_a_request_for_the_current_plan(owner_client):
    body = owner_client.post("/account/plan/", {"plan": "pro"}).content.decode()
    assert "already on the Pro plan" in body
    assert not UpgradeRequest.objects.exists()


def test_it_shows_upgrade_requests_to_staff_in_the_admin(owner_client, staff_client):
    owner_client.post("/account/plan/", {"plan": "business", "message": "We need 20 chatbots."})
    body = staff_client.get("/admin/wizchat/upgraderequest/").content.decode()
    assert "Acme" in body and "Business" in body


def test_it_lets_staff_apply_a_request_from_the_admin(owner_client, owner, staff_client):
    owner_client.post("/account/plan/", {"plan": "business"})
    request = UpgradeRequest.objects.get()
    staff_client.post("/admin/wizchat/upgraderequest/", {"action": "apply", "_selected_action": [request.pk]})
    owner.membership.account.refresh_from_db()
    request.refresh_from_db()
    assert owner.membership.account.plan.slug == "business"
    assert request.status == "done"


def test_it_links_a_free_accounts_locked_byoi_panel_to_the_plan_page(client, free_user):
    client.force_login(free_user)
    body = page(client, "/dashboard/chatbots/new/")
    locked = body[body.index('class="byoi-locked"'):]
    assert 'href="/account/plan/#upgrade"' in locked[:1500]


# --- words for customers ------------------------------------------------------------------------------------------


def customer_pages(client, chatbot):
    byoi_set_enabled(chatbot, True)
    for url in ["/dashboard/chatbots/", "/dashboard/chatbots/new/", f"/dashboard/chatbots/{chatbot.id}/",
                f"/byoi/chatbots/{chatbot.id}/", "/account/", "/account/plan/", "/account/team/",
                "/dashboard/api-keys/", "/docs/"]:
        yield url, page(client, url)
    yield "panel off", client.post(f"/byoi/chatbots/{chatbot.id}/panel/", {}, HTTP_HX_REQUEST="true").content.decode()


def test_it_names_no_operator_command_on_customer_pages(owner_client, chatbot):
    for url, body in customer_pages(owner_client, chatbot):
        assert "manage.py" not in body, url
        assert "byoi_migrate" not in body, url
        assert "`" not in re.sub(r"<pre>.*?</pre>", "", body, flags=re.S), url

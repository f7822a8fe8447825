"""Every URL, found from the URL configuration (so a new view cannot be forgotten): the methods it takes, who may
reach it (owner, admin, member, outsider, anonymous) and CSRF on everything that changes state.

Roles (wizchat/roles.py): a member of the team reads every page but changes only what MEMBER_MAY lists; every
other request that changes state — a new view's included, until it is listed here — must answer a member 403.

Every route is a dashboard route — it requires a log-in, and one naming an object is scoped to its account —
unless PUBLIC_ROUTES says why anyone may reach it. A route with a parameter these tests cannot fill fails
`test_every_route_is_known` until it is taught here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from byoi import services as byoi_services
from byoi.models import ConnectionTest, DataMove
from chatbots import apikeys
from chatbots.ingestion import document_add
from tests import team_fixtures
from tests.team_fixtures import join
from wizchat import team
from wizchat.models import Invite, Membership, UpgradeRequest

team_admin = team_fixtures.team_admin  # a fixture of tests/team_fixtures.py

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Route:
    pattern: str
    namespace: str | None
    name: str | None
    callback: object

    @property
    def id(self) -> str:
        return f"{self.namespace}:{self.name}" if self.namespace else (self.name or self.pattern)

    @property
    def params(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.pattern)

    @property
    def dashboard(self) -> bool:
        return self.id not in PUBLIC_ROUTES

    @property
    def scoped(self) -> bool:
        """Reaches one object of an account: the chatbot, its document or API key, a connection test."""
        return self.dashboard and bool(set(self.params) & OBJECT_PARAMS)


def _walk(patterns, prefix="", namespace=None):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace)
        else:
            yield Route(prefix + str(entry.pattern), namespace, entry.name, entry.callback)


ALL_ROUTES = list(_walk(get_resolver().url_patterns))
ROUTES = [r for r in ALL_ROUTES if r.namespace != "admin"]  # Django's admin: test_admin_* below
ADMIN_ROUTES = [r for r in ALL_ROUTES if r.namespace == "admin"]
OBJECT_PARAMS = {"chatbot_id", "document_id", "key_id", "test_id", "move_id", "member_id", "invite_id"}
KNOWN_PARAMS = OBJECT_PARAMS | {"kind", "model", "action", "token"}
# Outside the dashboard, each route says why it is reachable without a dashboard session.
PUBLIC_ROUTES = {
    "home": "redirects to the log-in page or the dashboard",
    "signup": "creates an account",
    "login": "logs in (throttled: test_security_login)",
    "logout": "logs out (POST only)",
    "api_chat_completions": "public API: an API key in Authorization (test_public_api)",
    "api_models": "public API: an API key in Authorization",
    "api_model": "public API: an API key in Authorization",
    "widget_script": "the widget's public script: holds nothing secret",
    "widget_frame": "the widget's frame: shown only inside the chatbot's allowed websites (frame-ancestors)",
    "widget_session": "the widget's session: only for an allowed Origin (test_widget)",
    "docs": "the product documentation",
    "favicon.ico": "a redirect to the static icon",
    "invite_accept": "an invite link: its single-use token is the credential (test_team_invites)",
    "runtime_usage": "deployed runtimes' usage reports: the deployment's platform token (test_runtime_quota)",
    "runtime_readiness": "deployed runtimes' readiness reports: the deployment's platform token "
                         "(test_runtime_readiness)",
}
# What a member of a team may change (wizchat/roles.py); every other POST (and the GET of a form only owners and
# admins may submit, MANAGER_PAGES) answers a member 403.
MEMBER_MAY = {
    "chatbots:chat": "chats with the team's chatbots",
    "chatbots:document_create": "adds documents",
    "chatbots:document_retry": "retries a failed ingestion",
    "password_change": "changes their own password",
    "team_start": "starts a team of their own once removed from theirs (a member in a team is told they are)",
}
MANAGER_PAGES = {"chatbots:create", "chatbots:edit", "chatbots:delete", "team_member_remove"}
# Authenticated by a bearer key, an Origin check or a runtime's platform token, never by the session cookie: CSRF
# does not apply.
CSRF_EXEMPT = {"api_chat_completions", "api_models", "api_model", "widget_session", "runtime_usage",
               "runtime_readiness"}


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(owner, chatbot):
    """One of each object a URL can name, all in the owner's account."""
    byoi_services.byoi_set_enabled(chatbot, True)
    component = byoi_services.component_save(chatbot, "llm", values={"endpoint": "https://llm.example.com/v1",
                                                                     "model": "gpt-4o"},
                                             secrets={"api_key": "sk-url-walk-0123456789"})
    document, _ = document_add(chatbot, title="Guide", text="Some text about BYOI.", queue=False)
    key, _ = apikeys.apikey_create(chatbot, "Website", user=owner)
    test = ConnectionTest(account=owner.membership.account, kind="llm", values=dict(component.values),
                          chatbot=chatbot, component=component, state="done")
    test.secrets = {"api_key": "sk-url-walk-0123456789"}
    test.save()
    move = DataMove.objects.create(chatbot=chatbot, switch_on=["vector_store"])
    someone = join(owner.membership.account, "someone@example.com", "member")
    invite, token = team.invite_create(owner.membership, "member")
    return {"chatbot_id": chatbot.id, "document_id": document.id, "key_id": key.id, "test_id": test.id,
            "move_id": move.id, "action": "cancel", "kind": "llm", "model": chatbot.slug,
            "member_id": someone.membership.public_id, "invite_id": invite.id, "token": token}


def url_of(route: Route, world: dict) -> str:
    def fill(match):
        if match.group(1) not in world:
            pytest.fail(f"{route.id} names a new kind of object ({match.group(1)}): create one in `world` so that "
                        "its owner, teammates and outsiders are tested")
        return str(world[match.group(1)])

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, route.pattern)


def client_for(user=None, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def request(client, method: str, url: str, **extra):
    data = {"target": "nowhere"} if method == "POST" else None  # a deploy that is refused, not started
    return getattr(client, method.lower())(url, data, **extra) if data else getattr(client, method.lower())(url,
                                                                                                          **extra)


def allowed_methods(route: Route, world: dict, user) -> set[str]:
    """What the view takes, from the Allow header of its 405 to a DELETE (test_it_refuses_other_methods)."""
    response = client_for(user).delete(url_of(route, world))
    assert response.status_code == 405, f"{route.id}: DELETE answered {response.status_code}"
    return {m.strip() for m in response["Allow"].split(",")} - {"HEAD", "OPTIONS"}


def test_every_route_is_known():
    unknown_params = {r.id: sorted(set(r.params) - KNOWN_PARAMS) for r in ROUTES if set(r.params) - KNOWN_PARAMS}
    stale = set(PUBLIC_ROUTES) - {r.id for r in ROUTES}
    assert not unknown_params, f"teach this test how to fill: {unknown_params}"
    assert not stale, f"no longer routes: {stale}"
    assert len([r for r in ROUTES if r.scoped]) >= 20


def test_only_the_bearer_and_origin_authenticated_views_skip_csrf():
    exempt = {r.id for r in ROUTES if getattr(r.callback, "csrf_exempt", False)}
    assert exempt == CSRF_EXEMPT


# -- methods ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_it_refuses_other_methods(route, world, owner):
    user = owner if route.dashboard else None  # the log-in page redirects a logged-in user before anything
    client = client_for(user)
    url = url_of(route, world)
    for method in ("DELETE", "PUT", "PATCH"):
        response = getattr(client, method.lower())(url)
        assert response.status_code == 405, f"{method} {url} answered {response.status_code}"
        assert response.has_header("Allow")
    allowed = allowed_methods(route, world, user)
    for method in {"GET", "POST"} - allowed:
        assert request(client, method, url).status_code == 405, f"{method} {url} is not refused"


def test_a_delete_on_a_chatbot_page_is_405_and_deletes_nothing(owner_client, chatbot):
    response = owner_client.delete(f"/dashboard/chatbots/{chatbot.id}/")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert type(chatbot).objects.filter(pk=chatbot.pk).exists()


# -- access ----------------------------------------------------------------------------------------------------

SCOPED = [r for r in ROUTES if r.scoped]


@pytest.mark.parametrize("route", SCOPED, ids=lambda r: r.id)
def test_the_owner_reaches_every_object_url(route, world, owner):
    client = client_for(owner)
    for method in sorted(allowed_methods(route, world, owner)):
        response = request(client, method, url_of(route, world))
        assert response.status_code in (200, 286, 302), f"{method} {route.id}: {response.status_code}"


@pytest.mark.parametrize("route", SCOPED, ids=lambda r: r.id)
def test_an_admin_reaches_every_object_url(route, world, owner, team_admin):
    client = client_for(team_admin)
    for method in sorted(allowed_methods(route, world, owner)):
        response = request(client, method, url_of(route, world))
        assert response.status_code in (200, 286, 302), f"{method} {route.id}: {response.status_code}"


DASHBOARD = [r for r in ROUTES if r.dashboard]


def test_the_member_lists_name_routes():
    ids = {r.id for r in ROUTES}
    assert set(MEMBER_MAY) <= ids
    assert MANAGER_PAGES <= ids


@pytest.mark.parametrize("route", DASHBOARD, ids=lambda r: r.id)
def test_a_member_reads_every_page_and_changes_only_what_members_may(route, world, owner, teammate):
    client = client_for(teammate)
    for method in sorted(allowed_methods(route, world, owner)):
        response = request(client, method, url_of(route, world))
        if route.id in MEMBER_MAY or (method == "GET" and route.id not in MANAGER_PAGES):
            assert response.status_code in (200, 286, 302), f"{method} {route.id}: {response.status_code}"
        else:
            assert response.status_code == 403, f"a member's {method} {route.id}: {response.status_code}"
            assert "Only owners and admins of Acme can" in response.content.decode(), route.id


def test_what_a_member_was_refused_is_untouched(world, owner, teammate, chatbot):
    client = client_for(teammate)
    before = {m.user.email: m.role for m in Membership.objects.all()}
    for route in DASHBOARD:
        if route.id not in MEMBER_MAY and "POST" in allowed_methods(route, world, owner):
            assert request(client, "POST", url_of(route, world)).status_code == 403, route.id
    chatbot.refresh_from_db()
    assert chatbot.name == "Support bot" and chatbot.allowed_origins == []
    assert type(chatbot).objects.count() == 1
    assert chatbot.documents.count() == 1
    assert chatbot.api_keys.filter(revoked__isnull=True).count() == 1
    assert chatbot.components.get(kind="llm").values["endpoint"] == "https://llm.example.com/v1"
    assert chatbot.byoi_enabled
    assert not hasattr(chatbot, "deployment") or chatbot.deployment is None
    assert {m.user.email: m.role for m in Membership.objects.all()} == before
    assert Invite.objects.filter(revoked__isnull=True).count() == 1
    assert not UpgradeRequest.objects.exists()


@pytest.mark.parametrize("route", SCOPED, ids=lambda r: r.id)
def test_an_outsider_gets_404_for_every_object_url(route, world, owner, outsider):
    client = client_for(outsider)
    for method in sorted(allowed_methods(route, world, owner)):
        response = request(client, method, url_of(route, world))
        assert response.status_code == 404, f"{method} {route.id}: {response.status_code}"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.dashboard], ids=lambda r: r.id)
def test_anonymous_visitors_are_sent_to_log_in_from_every_dashboard_url(route, world, owner):
    client = client_for()
    for method in sorted(allowed_methods(route, world, owner)):
        response = request(client, method, url_of(route, world))
        assert response.status_code == 302, f"{method} {route.id}: {response.status_code}"
        assert response["Location"].startswith("/login/?next=")


def test_what_an_outsider_was_refused_is_untouched(world, owner, outsider, chatbot):
    client = client_for(outsider)
    for route in SCOPED:
        if "POST" in allowed_methods(route, world, owner):
            request(client, "POST", url_of(route, world))
    chatbot.refresh_from_db()
    assert chatbot.documents.count() == 1
    assert chatbot.api_keys.filter(revoked__isnull=True).count() == 1
    assert chatbot.components.filter(kind="llm").exists()
    assert not hasattr(chatbot, "deployment") or chatbot.deployment is None


# -- CSRF ------------------------------------------------------------------------------------------------------

POSTABLE = [r for r in ROUTES if r.id not in CSRF_EXEMPT and r.id not in ("home", "widget_script", "widget_frame")]


@pytest.mark.parametrize("route", POSTABLE, ids=lambda r: r.id)
def test_every_state_changing_endpoint_refuses_a_post_without_the_csrf_token(route, world, owner):
    user = owner if route.dashboard or route.id == "logout" else None
    if "POST" not in allowed_methods(route, world, user if route.dashboard else None):
        pytest.skip(f"{route.id} takes no POST")  # reported by -ra; the set is asserted below
    client = client_for(user, enforce_csrf_checks=True)
    response = client.post(url_of(route, world), {"target": "nowhere"})
    assert response.status_code == 403, f"{route.id}: {response.status_code}"


def test_the_routes_that_take_no_post_are_the_read_only_ones(world, owner):
    read_only = {r.id for r in POSTABLE if "POST" not in allowed_methods(r, world, owner if r.dashboard else None)}
    assert read_only == {"chatbots:list", "chatbots:detail", "chatbots:document_row", "chatbots:data_locations",
                         "chatbots:history", "chatbots:deploy_status", "byoi:test_status", "byoi:data_move",
                         "account", "team", "api_keys", "docs", "password_changed", "favicon.ico"}


def test_the_same_post_with_the_token_is_accepted(owner, chatbot):
    client = client_for(owner, enforce_csrf_checks=True)
    client.get(f"/dashboard/chatbots/{chatbot.id}/edit/")
    token = client.cookies["csrftoken"].value
    response = client.post(f"/dashboard/chatbots/{chatbot.id}/edit/", {"name": "Renamed", "instructions": ""},
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302


# -- Django's admin --------------------------------------------------------------------------------------------

ADMIN_VALUES = {"app_label": "chatbots", "content_type_id": "1", "id": "1", "url": "no-such-page/"}


def admin_url(route: Route, world: dict) -> str | None:
    """A URL for an admin route: its name reversed, or (unnamed redirects) its pattern filled in."""
    values = {**ADMIN_VALUES, "object_id": str(world["chatbot_id"])}
    names = re.findall(r"\(\?P<(\w+)>", route.pattern) + re.findall(r"<(?:\w+:)?(\w+)>", route.pattern)
    if any(n not in values for n in names):
        return None
    if route.name is None:
        filled = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route.pattern)
        return "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], filled).replace("^", "").rstrip("$")
    return reverse(f"admin:{route.name}", kwargs={n: values[n] for n in names})


@pytest.mark.parametrize("role", ["anonymous", "customer"])
def test_admin_pages_are_for_staff_only(role, world, owner):
    client = client_for(owner if role == "customer" else None)
    reached = {}
    for route in ADMIN_ROUTES:
        url = admin_url(route, world)
        assert url is not None, f"teach ADMIN_VALUES to fill {route.pattern}"
        if route.name in ("login", "logout"):
            continue
        response = client.get(url)
        if response.status_code != 302 or not response["Location"].startswith("/admin/login/"):
            reached[url] = response.status_code
    assert not reached

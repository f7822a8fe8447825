"""Roles inside a team: each kind of change is refused to a member (403, nothing changed) and made by an owner
or an admin; a member sees no control they may not use, and the BYOI settings read-only without a secret.
(tests/test_security_urls.py walks every route with the same rule.)"""

import pytest
from django.test import Client

from byoi import services as byoi_services
from byoi.models import ConnectionTest, DataMove
from chatbots import apikeys
from chatbots.ingestion import document_add
from chatbots.models import Chatbot, Deployment
from tests import team_fixtures
from tests.team_fixtures import join
from wizchat.models import Invite, UpgradeRequest
from wizchat.roles import RoleRequired, can_manage, manager_require

team_admin, fast_hashing = team_fixtures.team_admin, team_fixtures.fast_hashing  # tests/team_fixtures.py
pytestmark = pytest.mark.usefixtures("fast_hashing")

SECRET = "sk-roles-0123456789abcdef"
LLM = {"endpoint": "https://llm.example.com/v1", "model": "gpt-4o"}
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def bot(chatbot, owner):
    """The owner's chatbot with a custom LLM, a document, an API key, an allowed website and a running
    deployment record."""
    byoi_services.byoi_set_enabled(chatbot, True)
    byoi_services.component_save(chatbot, "llm", values=LLM, secrets={"api_key": SECRET})
    document_add(chatbot, title="Guide", text="Some text about roles.", queue=False)
    apikeys.apikey_create(chatbot, "Website", user=owner)
    chatbot.allowed_origins = ["https://www.example.com"]
    chatbot.save(update_fields=["allowed_origins"])
    Deployment.objects.create(chatbot=chatbot, status=Deployment.Status.RUNNING, target=Deployment.Target.LOCAL)
    return chatbot


@pytest.fixture
def clients(owner, team_admin, teammate):
    def client_for(user):
        client = Client()
        client.force_login(user)
        return client

    return {"owner": client_for(owner), "admin": client_for(team_admin), "member": client_for(teammate)}


def llm_post(**extra):
    return {"byoi-enabled": "on", "llm-enabled": "on", "llm-endpoint": LLM["endpoint"], "llm-api_key": "",
            "llm-model": LLM["model"], **extra}


def fresh(bot):
    return Chatbot.objects.filter(pk=bot.pk).first()


# kind of change -> (method, url, data, whether it happened)
def _actions(bot):
    move = DataMove.objects.create(chatbot=bot, switch_on=["vector_store"])
    doc = bot.documents.get()
    key = bot.api_keys.get()
    base = f"/dashboard/chatbots/{bot.id}"
    return {
        "byoi settings save": ("post", f"/byoi/chatbots/{bot.id}/", llm_post(**{"llm-model": "gpt-4.1"}),
                               lambda: bot.components.get(kind="llm").values["model"] == "gpt-4.1"),
        "byoi disable": ("post", f"/byoi/chatbots/{bot.id}/", {}, lambda: not fresh(bot).byoi_enabled),
        "byoi component toggle": ("post", f"/byoi/chatbots/{bot.id}/panel/llm/", {"byoi-enabled": "on"},
                                  lambda: True),
        "test connection": ("post", f"/byoi/chatbots/{bot.id}/test/llm/", llm_post(),
                            lambda: ConnectionTest.objects.exists()),
        "re-test": ("post", f"/byoi/chatbots/{bot.id}/components/llm/retest/", {},
                    lambda: ConnectionTest.objects.exists()),
        "data move": ("post", f"/byoi/moves/{move.id}/cancel/", {},
                      lambda: DataMove.objects.get(pk=move.pk).state == "cancelled"),
        "deploy": ("post", f"{base}/deploy/", {"target": "nowhere"}, lambda: True),  # refused by the service
        "stop deployment": ("post", f"{base}/deploy/stop/", {},
                            lambda: Deployment.objects.get(chatbot=bot).status == "stopped"),
        "api key create": ("post", f"{base}/api-keys/", {"name": "New"}, lambda: bot.api_keys.count() == 2),
        "api key revoke": ("post", f"{base}/api-keys/{key.id}/revoke/", {},
                           lambda: bot.api_keys.get(pk=key.pk).revoked is not None),
        "allowed origins": ("post", f"{base}/allowed-origins/", {"allowed_origins": "https://evil.example"},
                            lambda: fresh(bot).allowed_origins == ["https://evil.example"]),
        "knowledge settings": ("post", f"{base}/knowledge-settings/",
                               {"chunk_size": "900", "chunk_overlap": "100", "entity_extraction": "rules"},
                               lambda: fresh(bot).chunk_size == 900),
        "document delete": ("post", f"{base}/documents/{doc.id}/delete/", {}, lambda: not bot.documents.exists()),
        "chatbot edit": ("post", f"{base}/edit/", {"name": "Renamed", "instructions": ""},
                         lambda: fresh(bot).name == "Renamed"),
        "chatbot delete": ("post", f"{base}/delete/", {}, lambda: fresh(bot) is None),
        "chatbot create": ("post", "/dashboard/chatbots/new/", {"name": "Another", "instructions": ""},
                           lambda: Chatbot.objects.filter(name="Another").exists()),
        "plan upgrade request": ("post", "/account/plan/", {"plan": "business"},
                                 lambda: UpgradeRequest.objects.exists()),
        "team invite": ("post", "/account/team/invites/", {"role": "member"}, lambda: Invite.objects.exists()),
    }


KINDS = ["byoi settings save", "byoi disable", "byoi component toggle", "test connection", "re-test", "data move",
         "deploy", "stop deployment", "api key create", "api key revoke", "allowed origins", "knowledge settings",
         "document delete", "chatbot edit", "chatbot delete", "chatbot create", "plan upgrade request",
         "team invite"]


def snapshot(bot):
    bot = fresh(bot)
    component = bot.components.get(kind="llm")
    return {
        "bot": (bot.name, bot.byoi_enabled, bot.allowed_origins, bot.chunk_size),
        "llm": (component.values, component.secrets, component.enabled),
        "keys": list(bot.api_keys.values_list("name", "revoked")),
        "documents": bot.documents.count(),
        "deployment": Deployment.objects.get(chatbot=bot).status,
        "moves": list(DataMove.objects.values_list("state", flat=True)),
        "chatbots": Chatbot.objects.count(),
        "tests": ConnectionTest.objects.count(),
        "upgrades": UpgradeRequest.objects.count(),
        "invites": Invite.objects.count(),
    }


def test_the_kinds_cover_every_action(bot):
    assert set(_actions(bot)) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_member_is_refused_each_kind_of_change_and_nothing_changes(kind, bot, clients):
    method, url, data, _ = _actions(bot)[kind]
    before = snapshot(bot)
    response = getattr(clients["member"], method)(url, data)
    assert response.status_code == 403
    assert snapshot(bot) == before


@pytest.mark.parametrize("role", ["owner", "admin"])
@pytest.mark.parametrize("kind", KINDS)
def test_owners_and_admins_make_each_kind_of_change(kind, role, bot, clients):
    method, url, data, happened = _actions(bot)[kind]
    response = getattr(clients[role], method)(url, data)
    assert response.status_code in (200, 302)
    assert happened()


def test_the_refusal_names_the_team_and_whom_to_ask(bot, clients):
    body = clients["member"].post(f"/dashboard/chatbots/{bot.id}/deploy/stop/").content.decode()
    assert "Only owners and admins of Acme can stop deployments; ask one of them: owner@example.com, " \
           "admin@example.com." in body


def test_a_refused_htmx_request_reloads_the_page_with_the_message(bot, clients):
    response = clients["member"].post(f"/dashboard/chatbots/{bot.id}/api-keys/", {"name": "x"}, **HX)
    assert response.status_code == 403
    assert response["HX-Refresh"] == "true"
    body = clients["member"].get(f"/dashboard/chatbots/{bot.id}/").content.decode()
    assert "Only owners and admins of Acme can create API keys" in body


def test_a_member_adds_documents(bot, clients):
    member = clients["member"]
    response = member.post(f"/dashboard/chatbots/{bot.id}/documents/", {"title": "Notes", "text": "More text."})
    assert response.status_code == 302
    assert bot.documents.filter(title="Notes").exists()


# --- what a member sees -------------------------------------------------------------------------------------

def test_a_member_sees_the_chatbot_page_without_any_edit_control(bot, clients):
    base = f"/dashboard/chatbots/{bot.id}"
    body = clients["member"].get(f"{base}/").content.decode()
    doc = bot.documents.get()
    for control in (f"{base}/edit/", f"{base}/delete/", f"{base}/documents/{doc.id}/delete/", f"{base}/deploy/", f"{base}/api-keys/",
                    f"{base}/allowed-origins/", f"{base}/knowledge-settings/", "/retest/",
                    ">Revoke<", ">Create key<", "Deploy to Kubernetes"):
        assert control not in body, control
    assert f"/dashboard/chatbots/{bot.id}/documents/" in body  # adding documents stays
    assert "https://www.example.com" in body  # the allowed websites, read-only
    assert "View BYOI settings" in body


def test_an_owner_sees_every_control(bot, clients):
    base = f"/dashboard/chatbots/{bot.id}"
    body = clients["owner"].get(f"{base}/").content.decode()
    for control in (f"{base}/edit/", f"{base}/delete/", f"{base}/deploy/stop/", f"{base}/api-keys/",
                    f"{base}/allowed-origins/", f"{base}/knowledge-settings/", "/retest/", ">Create key<"):
        assert control in body, control


def test_a_member_sees_the_byoi_settings_read_only_and_no_secret(bot, clients):
    response = clients["member"].get(f"/byoi/chatbots/{bot.id}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "read-only" in body
    assert "llm.example.com" in body
    assert "<form" not in body.split("<main", 1)[1]
    assert SECRET not in body


def test_a_member_sees_no_create_upgrade_or_invite_controls(bot, clients):
    member = clients["member"]
    assert "Create New Chatbot" not in member.get("/dashboard/chatbots/").content.decode()
    plan = member.get("/account/plan/").content.decode()
    assert "Ask for an upgrade</button>" not in plan
    team = member.get("/account/team/").content.decode()
    assert "Create invite link" not in team and "Change role" not in team


def test_the_account_page_shows_the_role(clients):
    assert "Admin of Acme" in clients["admin"].get("/account/").content.decode()
    assert "Member of Acme" in clients["member"].get("/account/").content.decode()


# --- the helper ---------------------------------------------------------------------------------------------

def test_it_says_who_may_manage(owner, team_admin, teammate):
    assert can_manage(owner.membership) and can_manage(team_admin.membership)
    assert not can_manage(teammate.membership)
    assert manager_require(team_admin, "deploy chatbots") == team_admin.membership
    with pytest.raises(RoleRequired):
        manager_require(teammate, "deploy chatbots")


def test_it_names_at_most_five_managers_owners_first(owner):
    account = owner.membership.account
    for n in range(6):
        join(account, f"admin{n}@example.com", "admin")
    member = join(account, "m@example.com", "member")
    with pytest.raises(RoleRequired) as refused:
        manager_require(member, "deploy chatbots")
    assert refused.value.managers[0] == "owner@example.com"
    assert len(refused.value.managers) == 5

"""A failed Create Chatbot (or BYOI settings) submit keeps what was typed: secrets in a short-lived encrypted
server-side draft (never in the page), the Test Connection results of the same settings, and a summary of the
errors at the top that links to each field."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from byoi import services
from byoi.models import BYOIComponent, ConnectionTest, SecretDraft, settings_fingerprint
from chatbots.models import Chatbot

NEW = "/dashboard/chatbots/new/"
SECRET = "s3cret-Pa55word-xyz"
PG_SECRET = "pg-Pa55word-kept-123"
LLM = {"llm-enabled": "on", "llm-endpoint": "https://llm.example.com/v1", "llm-api_key": SECRET,
       "llm-model": "gpt-4o"}
PG = {"vector_store-enabled": "on", "vector_store-host": "db.example.com", "vector_store-port": "5432",
      "vector_store-database": "vectors", "vector_store-username": "wizchat", "vector_store-password": PG_SECRET,
      "vector_store-ssl_mode": "require"}


def failed_submit(client, **extra) -> str:
    """Create Chatbot with every component valid but no name: nothing is created, the page comes back."""
    response = client.post(NEW, {"name": "", "byoi-enabled": "on", **LLM, **PG, **extra})
    assert response.status_code == 200
    assert not Chatbot.objects.exists()
    return response.content.decode()


def draft_id(body: str) -> str:
    return re.search(r'name="byoi-draft" value="([0-9a-f-]+)"', body).group(1)


def blanked(data: dict) -> dict:
    return {k: ("" if k in ("llm-api_key", "vector_store-password") else v) for k, v in data.items()}


def test_it_never_echoes_the_typed_secrets_into_the_page(owner_client):
    body = failed_submit(owner_client)
    assert SECRET not in body
    assert PG_SECRET not in body


def test_it_keeps_the_typed_secrets_in_an_encrypted_draft(owner_client):
    failed_submit(owner_client)
    draft = SecretDraft.objects.get()
    assert draft.content["llm"]["secrets"] == {"api_key": SECRET}
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload FROM byoi_secretdraft")
        stored = cursor.fetchone()[0]
    assert SECRET.encode() not in bytes(stored)


def test_it_refers_to_the_draft_by_an_opaque_id_only(owner_client):
    body = failed_submit(owner_client)
    assert draft_id(body) == str(SecretDraft.objects.get().pk)


def test_it_tells_the_customer_the_secret_is_kept(owner_client):
    body = failed_submit(owner_client)
    password = body[body.index('name="vector_store-password"'):]
    assert "Kept from your last attempt" in password[:800]
    assert "again: it is never sent back" not in body


def test_it_creates_the_chatbot_with_the_kept_secrets_on_the_next_submit(owner_client):
    body = failed_submit(owner_client)
    data = {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body), **blanked({**LLM, **PG})}
    response = owner_client.post(NEW, data)
    assert response.status_code == 302
    assert BYOIComponent.objects.get(kind="llm").secrets == {"api_key": SECRET}
    assert BYOIComponent.objects.get(kind="vector_store").secrets == {"password": PG_SECRET}


def test_it_deletes_the_draft_once_the_chatbot_is_created(owner_client):
    body = failed_submit(owner_client)
    owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body),
                            **blanked({**LLM, **PG})})
    assert not SecretDraft.objects.exists()


def test_it_prefers_a_newly_typed_secret_over_the_kept_one(owner_client):
    body = failed_submit(owner_client)
    owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body), **PG,
                            **LLM, "llm-api_key": "a-new-key-456"})
    assert BYOIComponent.objects.get(kind="llm").secrets == {"api_key": "a-new-key-456"}


def test_it_does_not_send_a_kept_secret_to_a_changed_address(owner_client):
    body = failed_submit(owner_client)
    data = {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body), **blanked({**LLM, **PG}),
            "vector_store-host": "other.example.com"}
    body = owner_client.post(NEW, data).content.decode()
    assert "Password is required." in body
    assert not Chatbot.objects.exists()


def test_it_saves_an_optional_secret_without_the_kept_one_when_its_address_changed(owner_client):
    body = failed_submit(owner_client)
    owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body), **PG,
                            **blanked(LLM), "llm-endpoint": "https://other.example.com/v1"})
    assert BYOIComponent.objects.get(kind="llm").secrets == {}


def test_it_keeps_the_secret_across_several_failed_submits(owner_client):
    body = failed_submit(owner_client)
    body = failed_submit(owner_client, **{"byoi-draft": draft_id(body), "llm-api_key": "", "vector_store-password": ""})
    owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body),
                            **blanked({**LLM, **PG})})
    assert BYOIComponent.objects.get(kind="llm").secrets == {"api_key": SECRET}
    assert SecretDraft.objects.count() == 0


def test_it_ignores_another_users_draft(owner_client, outsider):
    other = Client()
    other.force_login(outsider)
    body = failed_submit(other)
    Chatbot.objects.all().delete()
    body = owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body),
                                   **blanked({**LLM, **PG})}).content.decode()
    assert "Password is required." in body
    assert not Chatbot.objects.exists()


def test_it_ignores_an_expired_draft(owner_client):
    body = failed_submit(owner_client)
    SecretDraft.objects.update(created=timezone.now() - timedelta(hours=2))
    body = owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": draft_id(body),
                                   **blanked({**LLM, **PG})}).content.decode()
    assert "Password is required." in body


@pytest.mark.parametrize("bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", ""])
def test_it_ignores_a_malformed_or_unknown_draft_id(owner_client, bad):
    response = owner_client.post(NEW, {"name": "Helpdesk", "byoi-enabled": "on", "byoi-draft": bad,
                                       **blanked({**LLM, **PG})})
    assert response.status_code == 200
    assert "Password is required." in response.content.decode()


# --- test results and the error summary ---------------------------------------------------------------------------


def passed_test(owner, kind="llm", values=None, secrets=None):
    values, secrets = services.component_validate(
        kind, values or {"endpoint": "https://llm.example.com/v1", "model": "gpt-4o"},
        secrets or {"api_key": SECRET}, None)
    return ConnectionTest.objects.create(account=owner.membership.account, kind=kind, values=values, state="ok",
                                         finished=timezone.now(), steps=[{"name": "auth", "label": "Authentication",
                                                                          "status": "ok", "message": "Key accepted"}],
                                         fingerprint=settings_fingerprint(kind, values, secrets))


def test_it_keeps_the_test_connection_results_of_the_submitted_settings(owner_client, owner):
    passed_test(owner)
    body = failed_submit(owner_client)
    llm = body[body.index('id="byoi-llm"'):body.index('id="byoi-embeddings"')]
    assert "Connection OK" in llm
    assert "Not tested yet" not in llm


def test_it_does_not_show_a_result_of_other_settings(owner_client, owner):
    passed_test(owner, secrets={"api_key": "another-key"})
    body = failed_submit(owner_client)
    llm = body[body.index('id="byoi-llm"'):body.index('id="byoi-embeddings"')]
    assert "Connection OK" not in llm


def test_it_keeps_the_test_results_with_a_kept_secret(owner_client, owner):
    passed_test(owner)
    body = failed_submit(owner_client)
    body = failed_submit(owner_client, **{"byoi-draft": draft_id(body), "llm-api_key": ""})
    llm = body[body.index('id="byoi-llm"'):body.index('id="byoi-embeddings"')]
    assert "Connection OK" in llm


def test_it_puts_an_error_summary_at_the_top_linking_to_each_field(owner_client):
    body = owner_client.post(NEW, {"name": "", "byoi-enabled": "on", **LLM, "llm-model": ""}).content.decode()
    summary = body[body.index('id="error-summary"'):body.index('id="chatbot-form"')]
    assert "There are 2 problems" in summary
    assert '<a href="#id_name">Name: Give your chatbot a name.</a>' in summary
    assert '<a href="#id_llm-model">LLM: Model Name is required.</a>' in summary


def test_it_shows_no_error_summary_on_a_fresh_page(owner_client):
    assert 'id="error-summary"' not in owner_client.get(NEW).content.decode()


def test_it_keeps_the_draft_through_the_no_javascript_refresh(owner_client):
    body = failed_submit(owner_client)
    refreshed = owner_client.post(NEW, {"name": "", "byoi-enabled": "on", "byoi-refresh": "1",
                                        "byoi-draft": draft_id(body), **blanked({**LLM, **PG})}).content.decode()
    assert draft_id(refreshed) == draft_id(body)
    assert "Kept from your last attempt" in refreshed


def test_it_says_a_secret_is_kept_when_a_switch_re_renders_the_component(owner_client):
    body = failed_submit(owner_client)
    partial = owner_client.post("/byoi/panel/llm/", {"byoi-enabled": "on", "byoi-draft": draft_id(body),
                                                     **blanked(LLM)}, HTTP_HX_REQUEST="true").content.decode()
    assert "Kept from your last attempt" in partial
    assert SECRET not in partial


def test_it_keeps_a_typed_secret_on_a_failed_byoi_settings_save(owner_client, chatbot):
    services.byoi_set_enabled(chatbot, True)
    url = f"/byoi/chatbots/{chatbot.id}/"
    body = owner_client.post(url, {"byoi-enabled": "on", **LLM, "llm-model": ""}).content.decode()
    assert SECRET not in body
    assert 'id="error-summary"' in body
    owner_client.post(url, {"byoi-enabled": "on", "byoi-draft": draft_id(body), **blanked(LLM)})
    assert BYOIComponent.objects.get(chatbot=chatbot, kind="llm").secrets == {"api_key": SECRET}

"""The chatbot's connection log: BYOI changes, Test Connection outcomes and failures of the customer's own
components, on the BYOI settings page, once per failure and quiet period, never with a value."""

import pytest

from byoi import services
from byoi.activity import activity_list
from byoi.models import AuditEvent
from byoi.services import byoi_set_enabled, component_save
from chatbots.chat import chat_answer
from chatbots.ingestion import document_add, document_ingest
from tests.test_netguard import closed_port

WRONG = "wrong-password-8d3c"


def log_texts(chatbot) -> list[str]:
    return [entry.text for entry in activity_list(chatbot)]


@pytest.fixture
def custom_llm(chatbot, openai_server, owner):
    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key},
                   actor=owner)
    byoi_set_enabled(chatbot, True, actor=owner)
    return openai_server


def test_it_logs_settings_changes_by_field_name_with_who_made_them(chatbot, custom_llm, owner, customer_db):
    component_save(chatbot, "vector_store", values=customer_db, secrets={"password": customer_db["password"]},
                   actor=owner)
    component_save(chatbot, "vector_store", values={**customer_db, "port": 6543},
                   secrets={"password": customer_db["password"]}, actor=owner)
    entries = activity_list(chatbot)
    assert [e.text for e in entries[:2]] == ["Vector Store settings saved (changed: Port)",
                                             "Vector Store settings saved (changed: Host, Port, Database, Username, "
                                             "Password, SSL Mode)"]
    assert {e.who for e in entries} == {"owner@example.com"}
    assert "BYOI switched on" in log_texts(chatbot)


def test_it_logs_the_outcome_of_each_test_connection(chatbot, owner, customer_db):
    test = services.connection_test_start(owner.membership.account, "vector_store", customer_db,
                                          {"password": WRONG}, chatbot=chatbot, actor=owner)
    services.connection_test_run(test.id)
    entry = activity_list(chatbot)[0]
    assert (entry.text, entry.outcome) == ("Test Connection of Vector Store failed (auth)", "failed")


def test_it_logs_a_failing_customer_component_once_per_quiet_period(chatbot, custom_llm):
    port = closed_port()
    component_save(chatbot, "llm", values=custom_llm.llm_settings(endpoint=f"http://127.0.0.1:{port}/v1"),
                   secrets={"api_key": custom_llm.api_key})
    for _ in range(3):
        assert chat_answer(chatbot, "Anyone there?")["error"]["code"] == "refused"
    failures = [t for t in log_texts(chatbot) if "failed while" in t]
    assert failures == [f"LLM (http://127.0.0.1:{port}/v1) failed while answering (refused)"]

    AuditEvent.objects.filter(action="byoi.component_failed").update(created=AuditEvent.objects.get(
        action="byoi.component_failed").created.replace(year=2020))
    chat_answer(chatbot, "Anyone there now?")
    assert len([t for t in log_texts(chatbot) if "failed while" in t]) == 2


def test_it_logs_failures_while_adding_documents_and_saving_messages(chatbot, custom_llm, customer_db):
    component_save(chatbot, "vector_store", values=customer_db, secrets={"password": WRONG})
    document, _ = document_add(chatbot, title="Guide", text="Acme ships widgets to Globex.", queue=False)
    with pytest.raises(Exception, match="Vector Store"):
        document_ingest(document.id)
    component_save(chatbot, "conversations", values={**customer_db, "port": closed_port()},
                   secrets={"password": customer_db["password"]})
    assert chat_answer(chatbot, "Hello?")["stored"] == "queued"
    texts = log_texts(chatbot)
    assert any(t.startswith("Vector Store (127.0.0.1:") and t.endswith(" failed while adding a document (auth)")
               for t in texts), texts
    assert any(t.startswith("Conversations (127.0.0.1:") and t.endswith(" failed while saving messages (refused)")
               for t in texts), texts
    assert WRONG not in str([e.detail for e in AuditEvent.objects.all()])


def test_it_leaves_failures_of_wizchats_defaults_out_of_the_customers_log(chatbot, settings):
    settings.DEFAULT_LLM_ENDPOINT = f"http://127.0.0.1:{closed_port()}/v1"
    from byoi.resolver import clear_cache

    clear_cache()
    assert chat_answer(chatbot, "Hello?")["error"]["code"] == "refused"
    assert not AuditEvent.objects.filter(action="byoi.component_failed").exists()


def test_it_shows_the_log_on_the_byoi_settings_page_without_secrets(owner_client, chatbot, custom_llm):
    port = closed_port()
    component_save(chatbot, "llm", values=custom_llm.llm_settings(endpoint=f"http://127.0.0.1:{port}/v1"),
                   secrets={"api_key": custom_llm.api_key})
    chat_answer(chatbot, "Anyone there?")
    page = owner_client.get(f"/byoi/chatbots/{chatbot.id}/").content.decode()
    assert "Connection log" in page
    assert f"LLM (http://127.0.0.1:{port}/v1) failed while answering (refused)" in page
    assert "LLM settings saved (changed: API Endpoint)" in page
    assert custom_llm.api_key not in page
    detail = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/").content.decode()
    assert f"/byoi/chatbots/{chatbot.id}/#connection-log" in detail


def test_it_shows_no_other_accounts_log(client, outsider, chatbot, custom_llm):
    client.force_login(outsider)
    assert client.get(f"/byoi/chatbots/{chatbot.id}/").status_code == 404


def test_it_logs_when_the_conversations_database_takes_the_queued_messages(chatbot, custom_llm, customer_db):
    from conversations.models import Outbox
    from conversations.services import outbox_deliver

    component_save(chatbot, "conversations", values={**customer_db, "port": closed_port()},
                   secrets={"password": customer_db["password"]})
    assert chat_answer(chatbot, "Hello?")["stored"] == "queued"
    component_save(chatbot, "conversations", values=customer_db, secrets={"password": customer_db["password"]})
    rows = list(Outbox.objects.order_by("created", "id").values_list("id", flat=True))
    assert len(rows) == 2
    outbox_deliver(rows[0])
    assert not any("reachable again" in t for t in log_texts(chatbot))  # one message still waits
    outbox_deliver(rows[1])
    entry = activity_list(chatbot)[0]
    assert (entry.text, entry.outcome) == (
        "Conversations reachable again: the messages queued meanwhile are delivered", "ok")

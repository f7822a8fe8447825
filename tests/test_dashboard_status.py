"""The chatbot page's component badges tell what WizChat last saw: Test Connection or real traffic, whichever is
newer. Real traffic here is a chat against a real OpenAI-protocol server that is stopped and started again."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from byoi import activity
from byoi.models import AuditEvent, BYOIComponent, ConnectionTest
from byoi.services import byoi_set_enabled, component_save
from chatbots.chat import chat_answer
from tests.openai_server import OpenAIServer, _Handler, _QuietServer


@pytest.fixture(autouse=True)
def _fresh_failing_set():
    activity.failing_forget()
    yield
    activity.failing_forget()


@pytest.fixture
def llm_server():
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def byoi_llm(chatbot, llm_server):
    component_save(chatbot, "llm", values=llm_server.llm_settings(), secrets={"api_key": llm_server.api_key})
    byoi_set_enabled(chatbot, True)
    BYOIComponent.objects.filter(chatbot=chatbot, kind="llm").update(
        status="ok", last_checked=timezone.now() - timedelta(minutes=5))
    return chatbot


def restart(server: OpenAIServer) -> None:
    """Serve again on the same port (the component's settings name it)."""
    class Handler(_Handler):
        state = server

    server._stop.clear()
    server._httpd = _QuietServer((server.host, server.port), Handler)
    threading.Thread(target=server._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()


def answer_when_back(chatbot, seconds: float = 30.0) -> dict:
    """Ask until the LLM answers: after a failure WizChat may wait a few seconds before calling it again."""
    deadline = time.monotonic() + seconds
    while True:
        result = chat_answer(chatbot, "Hello again?")
        if result["error"] is None or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def row(client, chatbot, kind="llm") -> str:
    body = client.get(f"/dashboard/chatbots/{chatbot.id}/").content.decode()
    start = body.index(f'id="byoi-row-{kind}"')
    return body[start:body.index("</li>", start)]


def test_it_shows_a_component_failing_since_real_traffic_failed(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    assert chat_answer(byoi_llm, "Hello?")["error"]["code"] == "refused"
    shown = row(owner_client, byoi_llm)
    assert "Failing since" in shown
    assert "— refused" in shown
    assert "✓" not in shown
    assert "Re-test" in shown


def test_it_says_during_what_the_component_failed_and_how_to_fix_it(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    chat_answer(byoi_llm, "Hello?")
    shown = row(owner_client, byoi_llm)
    assert "while answering" in shown
    assert "Connection refused" in shown  # the taxonomy's hint for "refused"


def test_it_turns_green_again_when_traffic_recovers(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    chat_answer(byoi_llm, "Hello?")
    restart(llm_server)
    result = answer_when_back(byoi_llm)
    assert result["error"] is None, str(result["error"])
    shown = row(owner_client, byoi_llm)
    assert "✓</span> Connected" in shown
    assert "Working again" in shown


def test_it_logs_the_recovery_in_the_connection_log(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    chat_answer(byoi_llm, "Hello?")
    restart(llm_server)
    answer_when_back(byoi_llm)
    body = owner_client.get(f"/byoi/chatbots/{byoi_llm.id}/").content.decode()
    assert "LLM works again: WizChat reached it while answering" in body


def test_it_writes_nothing_for_working_traffic_of_a_component_not_failing(byoi_llm, django_assert_num_queries):
    stack = type("Stack", (), {"sources": {"llm": "custom"}})()
    activity.component_success_record(byoi_llm, stack, ["llm"], "answering")  # loads the (empty) failing set
    with django_assert_num_queries(0):
        assert activity.component_success_record(byoi_llm, stack, ["llm"], "answering") == []


def test_it_notices_a_failure_marked_by_another_process(owner_client, byoi_llm, llm_server):
    BYOIComponent.objects.filter(chatbot=byoi_llm, kind="llm").update(
        traffic_seen=timezone.now(), traffic_failing_since=timezone.now(), traffic_error_code="timeout",
        traffic_during="adding a document", traffic_fingerprint=BYOIComponent.objects.get(
            chatbot=byoi_llm, kind="llm").fingerprint)
    activity.failing_forget()  # as a process whose set was loaded before the other marked it, once reloaded
    assert chat_answer(byoi_llm, "Hello?")["error"] is None
    assert "✓</span> Connected" in row(owner_client, byoi_llm)


def test_it_shows_a_newer_test_connection_over_older_traffic(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    chat_answer(byoi_llm, "Hello?")
    BYOIComponent.objects.filter(chatbot=byoi_llm, kind="llm").update(status="ok", last_checked=timezone.now())
    assert "✓</span> Connected" in row(owner_client, byoi_llm)


def test_it_forgets_traffic_seen_with_settings_since_changed(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    chat_answer(byoi_llm, "Hello?")
    component_save(byoi_llm, "llm", values=llm_server.llm_settings(model="llama-3.1-70b"),
                   secrets={"api_key": llm_server.api_key})
    shown = row(owner_client, byoi_llm)
    assert "Failing since" not in shown
    assert "Untested" in shown


def test_it_records_one_log_row_but_keeps_the_badge_current_during_an_outage(owner_client, byoi_llm, llm_server):
    llm_server.stop()
    chat_answer(byoi_llm, "Hello?")
    chat_answer(byoi_llm, "Hello?")
    assert AuditEvent.objects.filter(chatbot_id=byoi_llm.id, action="byoi.component_failed").count() == 1
    assert BYOIComponent.objects.get(chatbot=byoi_llm, kind="llm").traffic_failing_since is not None


def test_it_marks_nothing_for_a_failing_wizchat_default(owner_client, chatbot, settings):
    from byoi.access import ComponentFailed, failure_record
    from byoi.errors import BackendError

    failure_record(chatbot, ComponentFailed("llm", "WizChat default", BackendError("refused", "down")), "answering")
    assert not BYOIComponent.objects.filter(traffic_failing_since__isnull=False).exists()


# --- Test Connection: an unencrypted connection is a warning ------------------------------------------------------

PREFER_STEPS = [
    {"name": "address", "label": "Address allowed", "status": "ok", "code": "", "message": "", "hint": "", "ms": 1},
    {"name": "tcp", "label": "TCP connection", "status": "ok", "code": "", "message": "", "hint": "", "ms": 1},
    {"name": "tls", "label": "TLS", "status": "ok", "code": "", "hint": "", "ms": 1,
     "message": "The server does not offer SSL: the connection will not be encrypted."},
    {"name": "auth", "label": "Authentication", "status": "ok", "code": "", "message": "", "hint": "", "ms": 1},
]


def test_it_shows_an_unencrypted_connection_as_an_amber_warning_not_a_pass(owner_client, owner):
    test = ConnectionTest(account=owner.membership.account, kind="vector_store", state="ok", steps=PREFER_STEPS,
                          finished=timezone.now())
    test.save()
    body = owner_client.get(f"/byoi/tests/{test.id}/", HTTP_HX_REQUEST="true").content.decode()
    tls = body[body.index('<span class="step-label">TLS</span>') - 200:body.index('<span class="step-label">TLS')]
    assert 'class="step step-warning"' in tls
    assert '<span class="badge warn"><span aria-hidden="true">!</span> Connection OK, 1 warning</span>' in body
    assert "✓</span> Connection OK" not in body
    assert "choose SSL Mode “require” or stronger" in body


def test_it_shows_a_step_the_check_reports_as_a_warning_in_amber(owner_client, owner):
    steps = [{**step, "status": "warning", "message": "Not encrypted: SSL is off."} if step["name"] == "tls" else step
             for step in PREFER_STEPS]
    test = ConnectionTest(account=owner.membership.account, kind="graph", state="ok", steps=steps,
                          finished=timezone.now())
    test.save()
    body = owner_client.get(f"/byoi/tests/{test.id}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'class="step step-warning"' in body
    assert "Not encrypted: SSL is off." in body
    assert "Connection OK, 1 warning" in body

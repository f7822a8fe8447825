"""Test Connection end to end: row → on_commit → a real Celery worker → steps saved → component status."""

import json
import time

import pytest
from celery.result import AsyncResult
from celery.signals import before_task_publish

from byoi import services
from byoi.models import BYOIComponent, ConnectionTest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

WAIT_SECONDS = 60


def wait_for(predicate, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Gave up waiting for {what}")


def finished(test_id) -> ConnectionTest:
    return wait_for(lambda: ConnectionTest.objects.filter(pk=test_id, state__in=["ok", "failed"]).first(),
                    "the worker to finish the test")


@pytest.fixture
def published():
    """Every Celery message this process publishes: (headers, body) as sent to the broker."""
    sent = []

    def record(sender=None, body=None, headers=None, **kwargs):
        sent.append((headers, body))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


@pytest.fixture
def component(chatbot, openai_server):
    return services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url, "model": "gpt-4o-mini"},
                                   secrets={"api_key": openai_server.api_key})


def test_it_runs_the_test_in_the_worker_and_marks_the_component_ok(component):
    test = services.connection_test_retest(component)
    finished(test.id)
    assert BYOIComponent.objects.get(pk=component.pk).status == "ok"


def test_it_saves_every_step_of_a_passing_run(component):
    test = finished(services.connection_test_retest(component).id)
    # The test server is plain http://: its TLS step is a warning, which does not fail the run.
    assert [(s["name"], s["status"]) for s in test.steps] == [("address", "ok"), ("tcp", "ok"), ("tls", "warning"),
                                                              ("auth", "ok"), ("operation", "ok")]
    assert test.state == "ok"


def test_it_saves_a_failing_run_with_its_code_and_hint(chatbot, openai_server):
    component = services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url,
                                                                "model": "gpt-4o-mini"},
                                        secrets={"api_key": "sk-wrong-0000000000"})
    test = finished(services.connection_test_retest(component).id)
    component.refresh_from_db()
    failed = next(s for s in test.steps if s["status"] == "failed")
    assert (component.status, component.error_code, failed["hint"].startswith("Authentication Failed")) == (
        "failed", "auth", True)


def test_it_saves_steps_while_the_test_is_still_running(component, openai_server):
    openai_server.mode = "hang"  # the endpoint accepts connections but never answers
    test = services.connection_test_retest(component)
    seen = wait_for(lambda: ConnectionTest.objects.filter(pk=test.id, state="running").exclude(steps=[]).first(),
                    "a running test with saved steps")
    statuses = [s["status"] for s in seen.steps]
    assert "ok" in statuses and "pending" in statuses
    finished(test.id)


def test_it_sends_the_worker_only_the_test_id(component, published):
    test = services.connection_test_retest(component)
    finished(test.id)
    (headers, body), = [(h, b) for h, b in published if h["task"] == "byoi.connection_test"]
    args, kwargs, _ = body
    assert (list(args), kwargs) == ([str(test.id)], {})


def test_it_puts_no_secret_in_the_message(component, published, openai_server):
    finished(services.connection_test_retest(component).id)
    assert openai_server.api_key not in json.dumps([[h, b] for h, b in published], default=str)


def test_it_puts_no_secret_in_the_task_result(component, published, openai_server):
    finished(services.connection_test_retest(component).id)
    task_id = next(h["id"] for h, _ in published if h["task"] == "byoi.connection_test")
    result = AsyncResult(task_id).get(timeout=WAIT_SECONDS)
    assert result["state"] == "ok" and openai_server.api_key not in json.dumps(result)


def test_it_drops_the_candidate_secrets_after_the_worker_ran(component):
    test = finished(services.connection_test_retest(component).id)
    assert test.secrets == {}


def test_it_tests_a_real_customer_database_when_its_check_exists(chatbot, customer_db):
    pytest.importorskip("byoi.checks.vector_store", reason="the vector store check has not landed yet")
    values = {k: v for k, v in customer_db.items() if k != "password"}
    component = services.component_save(chatbot, "vector_store", values=values,
                                        secrets={"password": customer_db["password"]})
    test = finished(services.connection_test_retest(component).id)
    assert (test.state, BYOIComponent.objects.get(pk=component.pk).status) == ("ok", "ok"), test.steps[0]["message"]


def test_it_writes_no_secret_to_the_worker_log(chatbot, openai_server, peers):
    component = services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url,
                                                                "model": "gpt-4o-mini"},
                                        secrets={"api_key": "sk-worker-log-secret-42"})
    finished(services.connection_test_retest(component).id)
    assert "sk-worker-log-secret-42" not in (peers.root / "celery.log").read_text()


def test_it_scrubs_secrets_in_the_worker_log_handlers(celery_worker):
    from wizchat.celery import app

    # The worker replaced the root handlers; ask it (through a real task) whether each one scrubs.
    assert app.send_task("byoi.logging_scrubbed").get(timeout=WAIT_SECONDS) is True


def test_it_ends_quietly_when_the_test_row_is_gone(celery_worker):
    from wizchat.celery import app

    result = app.send_task("byoi.connection_test", args=["00000000-0000-0000-0000-000000000000"])
    assert result.get(timeout=WAIT_SECONDS)["state"] == "gone"

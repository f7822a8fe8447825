"""WizChat's own faults in background work: a Celery worker process killed (SIGKILL) in the middle of an ingestion
runs the task again with no duplicate chunk; a job left `running` without progress is marked failed with Retry;
tasks against one customer component take at most their share of the workers; the worker consumes every queue."""

import os
import signal
import time
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from byoi.access import _SLOT_NAMESPACE, _slot_key, component_slots, resolve_stack
from byoi.services import byoi_set_enabled, component_save
from chatbots.ingestion import EMBED_BATCH, document_add, document_ingest
from chatbots.models import Document
from chatbots.services import chatbot_create
from tests.peers import PEERS
from wizchat import embedded

TEXT = "\n\n".join(f"Section {n}: Acme Corporation ships the Wombatrix Engine to Globex Industries in Basel."
                   for n in range(600))


def active_ingestion(app, document_id: str) -> dict | None:
    for tasks in (app.control.inspect(timeout=1).active() or {}).values():
        for task in tasks:
            if task["name"] == "chatbots.ingest_document" and document_id in str(task.get("args")):
                return task
    return None


@pytest.mark.django_db(transaction=True)  # plans come back through make_user (conftest._ensure_plans)
def test_a_worker_killed_mid_ingestion_runs_the_task_again_without_duplicate_chunks(celery_worker, owner,
                                                                                    openai_server, fault_record):
    from wizchat.celery import app

    chatbot = chatbot_create(owner.membership.account, name="Kill bot")
    chatbot.chunk_size, chatbot.chunk_overlap = 200, 0
    chatbot.save()
    values = openai_server.embeddings_settings(model="text-embedding-3-small", dimensions=64)
    component_save(chatbot, "embeddings", values={k: v for k, v in values.items() if k != "api_key"},
                   secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    openai_server.embeddings_delay = 0.7  # each batch of EMBED_BATCH chunks takes this long
    document, _ = document_add(chatbot, title="Long guide", text=TEXT)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        document.refresh_from_db()
        if document.chunks_embedded >= EMBED_BATCH:
            break
        time.sleep(0.05)
    assert 0 < document.chunks_embedded < document.chunks_total, "not mid-ingestion"
    task = active_ingestion(app, str(document.id))
    assert task is not None
    os.kill(task["worker_pid"], signal.SIGKILL)  # the worker process running it dies (out of memory, killed…)
    killed_at, progress_at_kill = time.monotonic(), document.chunks_embedded

    openai_server.embeddings_delay = 0.0
    deadline = time.monotonic() + 90
    while document.status != Document.Status.DONE and time.monotonic() < deadline:
        time.sleep(0.2)
        document.refresh_from_db()
    seconds = time.monotonic() - killed_at
    stored = resolve_stack(chatbot).vector_store.count(chatbot.id)
    fault_record("Celery worker process", "SIGKILL mid-ingestion", "ingestion", document.status, seconds,
                 document.chunks_total - stored, progress_at_kill=progress_at_kill, chunks=document.chunks_total,
                 attempts=document.attempts)
    assert document.status == Document.Status.DONE
    assert document.attempts >= 2  # it ran again…
    assert stored == document.chunks_total  # …and every chunk is there once
    assert document.chunks_embedded == document.chunks_total


def test_a_job_running_without_progress_is_marked_failed_with_retry(owner_client, chatbot, settings,
                                                                    django_capture_on_commit_callbacks):
    settings.INGESTION_STALL_SECONDS = 600
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    Document.objects.filter(pk=document.pk).update(status=Document.Status.RUNNING, chunks_total=300,
                                                   chunks_embedded=32, updated=timezone.now() - timedelta(minutes=11))
    row = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/",
                           HTTP_HX_REQUEST="true").content.decode()
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert "stopped making progress" in row and "Retry" in row
    with django_capture_on_commit_callbacks() as queued:
        owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/retry/", HTTP_HX_REQUEST="true")
    assert len(queued) == 1
    assert document_ingest(document.id).status == Document.Status.DONE


def test_a_job_still_making_progress_is_left_running(owner_client, chatbot, settings):
    settings.INGESTION_STALL_SECONDS = 600
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    Document.objects.filter(pk=document.pk).update(status=Document.Status.RUNNING,
                                                   updated=timezone.now() - timedelta(minutes=9))
    owner_client.get(f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/", HTTP_HX_REQUEST="true")
    document.refresh_from_db()
    assert document.status == Document.Status.RUNNING


def test_tasks_against_one_customer_component_take_one_worker_at_a_time(chatbot, customer_db):
    component_save(chatbot, "conversations", values=customer_db, secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    stack = resolve_stack(chatbot)
    # Another worker process (its own session on the platform database) holds the slot meanwhile.
    other = psycopg.connect(PEERS.platform_pg.dsn(django_settings.DATABASES["default"]["NAME"]), autocommit=True)
    try:
        with component_slots(stack, ("conversations",)) as free:
            assert free
            slot = _slot_key(stack.fingerprint("conversations"), 0)
            assert not other.execute("SELECT pg_try_advisory_lock(%s, %s)", [_SLOT_NAMESPACE, slot]).fetchone()[0]
        assert other.execute("SELECT pg_try_advisory_lock(%s, %s)", [_SLOT_NAMESPACE, slot]).fetchone()[0]
        with component_slots(stack, ("conversations",)) as free:
            assert not free  # busy: the task comes back later instead of waiting on the same database
    finally:
        other.close()


def test_wizchats_own_defaults_take_no_slot(chatbot):
    with component_slots(resolve_stack(chatbot), ("conversations", "vector_store")) as free:
        assert free


def test_the_worker_consumes_every_queue_tasks_are_routed_to():
    routed = {route["queue"] for route in django_settings.CELERY_TASK_ROUTES.values()}
    declared = {queue.name for queue in django_settings.CELERY_TASK_QUEUES}
    assert routed | {django_settings.CELERY_TASK_DEFAULT_QUEUE} <= declared == set(embedded.CELERY_QUEUES)
    assert django_settings.CELERY_TASK_REJECT_ON_WORKER_LOST and django_settings.CELERY_TASK_ACKS_LATE


def test_every_task_has_a_time_limit():
    from wizchat.celery import app

    app.loader.import_default_modules()
    for name in ("chatbots.ingest_document", "conversations.outbox_deliver"):
        task = app.tasks[name]
        assert task.soft_time_limit and task.time_limit > task.soft_time_limit
    assert django_settings.CELERY_TASK_SOFT_TIME_LIMIT < django_settings.CELERY_TASK_TIME_LIMIT

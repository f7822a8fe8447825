"""Secret canaries: a chatbot with all five BYOI components on real peers, whose API keys and passwords are
unique canaries, goes through what a customer does — a failed save, Test Connection of every kind, saving,
adding a document, a chat — and then no rendered page, admin page, platform database column (the encrypted ones
included: they must not hold the plaintext), broker/FalkorDB key or log line may contain any canary.

Celery tasks are queued for real (transactional database, on_commit fires) and every message is searched as it is
published; the tests then run the work as the worker would (the same service functions) — or wait for the
session's Celery worker when an earlier test started one and it took the job first."""

import io
import json
import logging
import time
import uuid

import pytest
import redis
from celery.signals import before_task_publish
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from byoi import services as byoi_services
from byoi.models import BYOIComponent, ConnectionTest
from chatbots.ingestion import document_ingest
from chatbots.models import Document
from tests.peers import PEERS

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ["llm", "embeddings", "vector_store", "graph", "conversations"]
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def canaries(openai_server, customer_db, customer_falkor):
    """The secrets of the five components; each is unique to this test."""
    openai_server.api_key = f"sk-canary-{uuid.uuid4().hex}"
    return {"api_key": openai_server.api_key, "pg_password": customer_db["password"],
            "falkor_password": customer_falkor.password}


def needles(canaries: dict) -> list[bytes]:
    """Each canary, and a middle slice of it (a secret cut short or partly masked is still a leak)."""
    out = []
    for value in canaries.values():
        out += [value.encode(), value[len(value) // 4: len(value) // 4 + 12].encode()]
    return out


def leaks(text, canaries: dict) -> list[str]:
    data = text if isinstance(text, bytes) else str(text).encode()
    return [n.decode() for n in needles(canaries) if n in data]


def form_data(openai_server, customer_db, customer_falkor, canaries, **override) -> dict:
    pg = {k: str(v) for k, v in customer_db.items() if k != "password"}
    data = {"byoi-enabled": "on"}
    for kind in KINDS:
        data[f"{kind}-enabled"] = "on"
    data.update({"llm-endpoint": openai_server.base_url, "llm-api_key": canaries["api_key"], "llm-model": "gpt-4o-mini",
                 "embeddings-endpoint": openai_server.base_url, "embeddings-api_key": canaries["api_key"],
                 "embeddings-model": "text-embedding-3-small", "embeddings-dimensions": "1536",
                 "graph-host": "127.0.0.1", "graph-port": str(customer_falkor.port),
                 "graph-password": canaries["falkor_password"], "graph-ssl": ""})
    for kind in ("vector_store", "conversations"):
        data.update({f"{kind}-{k}": v for k, v in pg.items()})
        data[f"{kind}-password"] = canaries["pg_password"]
    data.update(override)
    return data


@pytest.fixture
def journey(owner, chatbot, openai_server, customer_db, customer_falkor, canaries, caplog, capfd):
    """Everything a customer does with the secrets; returns the pages they saw, in order."""
    from django.test import Client

    published = []

    def record(body=None, headers=None, **kwargs):
        published.append(json.dumps({"body": body, "headers": headers}, default=str))

    before_task_publish.connect(record, weak=False)
    caplog.set_level(logging.DEBUG)
    for name in ("byoi", "chatbots", "conversations", "wizchat", "httpx", "openai", "celery", "django.request"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    client = Client()
    client.force_login(owner)
    data = form_data(openai_server, customer_db, customer_falkor, canaries)
    settings_url = f"/byoi/chatbots/{chatbot.id}/"
    seen = [client.post(settings_url, {**data, "vector_store-port": "not a port"})]  # a failed save: re-rendered
    for kind in KINDS:
        fields = {k: v for k, v in data.items() if k.startswith(f"{kind}-")}
        seen.append(client.post(f"/byoi/chatbots/{chatbot.id}/test/{kind}/", fields, **HX))
    for test in ConnectionTest.objects.all():
        byoi_services.connection_test_run(test.id)  # what the queued Celery task does
        seen.append(client.get(f"/byoi/tests/{test.id}/", **HX))
        seen.append(client.get(f"/byoi/tests/{test.id}/"))
    seen.append(client.post(settings_url, data))
    assert BYOIComponent.objects.filter(enabled=True).count() == 5, seen[-1].content.decode()[:3000]
    seen.append(client.post(f"/dashboard/chatbots/{chatbot.id}/documents/",
                            {"mode": "paste", "title": "Plans", "text": "BYOI is on the Pro plan."}))
    try:
        document_ingest(Document.objects.get().id)
    except Exception:  # noqa: S110 - the session's worker, if any, holds the job (ComponentBusy): wait for it below
        pass
    deadline = time.monotonic() + 60
    while Document.objects.get().status != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Document.objects.get().status == "done", Document.objects.get().error_message
    chat = client.post(f"/dashboard/chatbots/{chatbot.id}/chat/", {"question": "Which plan has BYOI?"},
                       HTTP_ACCEPT="text/event-stream")
    seen.append(b"".join(chat.streaming_content))
    kind = BYOIComponent.objects.get(kind="llm").kind
    seen.append(client.post(f"/byoi/chatbots/{chatbot.id}/components/{kind}/retest/", **HX))
    for url in (f"/dashboard/chatbots/{chatbot.id}/", settings_url, f"/dashboard/chatbots/{chatbot.id}/edit/",
                f"/dashboard/chatbots/{chatbot.id}/history/", f"/dashboard/chatbots/{chatbot.id}/data-locations/",
                f"/dashboard/chatbots/{chatbot.id}/deploy/status/", "/dashboard/chatbots/"):
        seen.append(client.get(url))
    out, err = capfd.readouterr()
    before_task_publish.disconnect(record)
    return {"client": client, "pages": seen, "logs": [r.getMessage() for r in caplog.records], "output": out + err,
            "published": published}


def body(page) -> bytes:
    return page if isinstance(page, bytes) else page.content


def test_the_journey_really_used_every_canary(journey, openai_server, canaries):
    assert openai_server.calls("/chat/completions") and openai_server.calls("/embeddings")
    finished = [t for t in ConnectionTest.objects.all() if t.finished_state]  # the Re-test too, if a worker runs
    assert len(finished) >= 5
    assert all(t.state == "ok" for t in finished), [(t.kind, t.error_code) for t in finished]
    assert any(b"event: token" in body(p) for p in journey["pages"])


def test_no_page_the_customer_saw_holds_a_canary(journey, canaries):
    found = {i: leaks(body(page), canaries) for i, page in enumerate(journey["pages"])}
    assert not {i: f for i, f in found.items() if f}


def test_no_admin_page_holds_a_canary(journey, owner, canaries):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client = journey["client"]
    client.force_login(owner)
    found, visited = {}, 0
    for model in admin.site._registry:
        meta = model._meta
        urls = [reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")]
        urls += [reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])
                 for pk in model.objects.values_list("pk", flat=True)[:5]]
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            visited += 1
            if leaks(response.content, canaries):
                found[url] = leaks(response.content, canaries)
    assert visited > 20
    assert not found


def database_leaks(canaries: dict) -> tuple[list[str], int]:
    """(table.column holding a canary, how many searches ran) over every column of the platform database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = current_schema()")
        columns = cursor.fetchall()
        found, searched = [], 0
        for table, column, data_type in columns:
            for needle in needles(canaries):
                if data_type == "bytea":
                    sql = f'SELECT count(*) FROM "{table}" WHERE position(%s::bytea in "{column}") > 0'  # noqa: S608
                else:
                    sql = f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s'  # noqa: S608
                    needle = b"%" + needle + b"%"
                cursor.execute(sql, [needle.decode()] if data_type != "bytea" else [needle])
                searched += 1
                if cursor.fetchone()[0]:
                    found.append(f"{table}.{column}")
    return found, searched


def test_no_platform_database_column_holds_a_canary(journey, canaries):
    found, searched = database_leaks(canaries)
    assert searched > 200
    assert not found


def test_the_database_search_would_find_a_leak(journey, chatbot, canaries):
    from byoi.models import AuditEvent

    AuditEvent.objects.create(chatbot_id=chatbot.id, action="tests.leak", detail={"note": canaries["api_key"]})
    assert set(database_leaks(canaries)[0]) == {"byoi_auditevent.detail"}


def test_the_encrypted_columns_hold_the_secrets_but_not_in_plaintext(journey, canaries):
    component = BYOIComponent.objects.get(kind="vector_store")
    assert component.secrets["password"] == canaries["pg_password"]  # decrypts: the value is there
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_values FROM byoi_byoicomponent WHERE id = %s", [component.id])
        raw = bytes(cursor.fetchone()[0])
    assert canaries["pg_password"].encode() not in raw


def redis_leaks(canaries: dict) -> tuple[list, int]:
    found, keys = [], 0
    for db in range(16):
        client = redis.Redis.from_url(PEERS.falkor.url(db))
        for key in client.scan_iter(count=500):
            keys += 1
            dumped = client.dump(key) or b""
            if leaks(key + dumped, canaries):
                found.append((db, key))
    return found, keys


def test_no_broker_or_falkordb_key_holds_a_canary(journey, canaries):
    found, keys = redis_leaks(canaries)
    assert keys > 0  # the queued tasks at least
    assert not found


def test_the_redis_search_would_find_a_leak(journey, canaries):
    client = redis.Redis.from_url(PEERS.falkor.url(3))
    client.set("tests:leak", f"password={canaries['falkor_password']}")
    try:
        assert (3, b"tests:leak") in redis_leaks(canaries)[0]
    finally:
        client.delete("tests:leak")


def test_queued_tasks_carry_ids_only(journey, canaries):
    published = journey["published"]
    assert len(published) >= 7  # five Test Connections, the document, the Re-test
    assert not [message[:200] for message in published if leaks(message, canaries)]


def test_no_log_line_holds_a_canary(journey, canaries):
    assert any("Test Connection" in line for line in journey["logs"])
    assert any("HTTP" in line for line in journey["logs"])  # DEBUG from the libraries too (httpx, openai)
    assert not [line[:200] for line in journey["logs"] if leaks(line, canaries)]
    assert not leaks(journey["output"], canaries)


def test_the_runtime_environment_listing_masks_every_canary(journey, chatbot, canaries):
    out = io.StringIO()
    call_command("chatbot_env", str(chatbot.id), stdout=out)
    assert "CUSTOM_CONVERSATIONS_PASSWORD=***" in out.getvalue()
    assert not leaks(out.getvalue(), canaries)

"""Tenant isolation: one customer's failing database must never slow another customer.

Account A's chatbot keeps its conversations (or its vectors) in A's own PostgreSQL, reached through a proxy that
goes silent (accepts, never answers). Account B's chatbot runs on WizChat's defaults. B's chat and B's ingestion
are timed with A idle, then again while A's stall is in flight (several A chats waiting on A's database; A's
outbox retries and A's ingestion jobs waiting in the Celery worker), in the same test. The bound:
B during A's stall <= 1.2 x B's baseline + 200 ms (medians)."""

import statistics
import threading
import time

import pytest
from django.db import connection

from byoi import resolver
from byoi.services import byoi_set_enabled, component_save
from chatbots.chat import chat_answer
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import Document
from chatbots.services import chatbot_create
from conversations.models import Outbox
from conversations.services import conversation_append, message_new
from tests.fault_proxy import FaultProxy
from tests.peers import PEERS

TEXT = "BYOI is available on the Pro, Pro+, Business and Enterprise plans. The Free plan does not include BYOI."
QUESTION = "Which plans include BYOI?"
RUNS = 5
A_CHATS = 6


def bound(baseline: float) -> float:
    return 1.2 * baseline + 0.2


@pytest.fixture
def isolation_settings(settings, openai_server):
    settings.BYOI_CONNECT_TIMEOUT, settings.BYOI_OPERATION_TIMEOUT = 1, 4
    openai_server.as_default_llm(settings)
    yield settings
    resolver.clear_cache()


@pytest.fixture
def accounts(make_user, isolation_settings):
    a = chatbot_create(make_user(team_name="Account A").membership.account, name="A bot")
    b = chatbot_create(make_user(team_name="Account B").membership.account, name="B bot")
    return a, b


@pytest.fixture
def proxy():
    p = FaultProxy(PEERS.customer_pg.port)
    yield p
    p.close()


def own_database(chatbot, kind, db, proxy):
    component_save(chatbot, kind, values={**db, "port": proxy.port}, secrets={"password": db["password"]})
    byoi_set_enabled(chatbot, True)


def timed_chat(chatbot) -> float:
    started = time.monotonic()
    result = chat_answer(chatbot, QUESTION)
    assert result["error"] is None and result["stored"] == "stored", result
    return time.monotonic() - started


@pytest.mark.django_db(transaction=True)  # plans come back through make_user (conftest._ensure_plans)
def test_another_accounts_chat_keeps_its_latency_while_one_accounts_conversations_database_hangs(
        accounts, customer_db, proxy, fault_record):
    a, b = accounts
    own_database(a, "conversations", customer_db, proxy)
    document, _ = document_add(b, title="Plans", text=TEXT, queue=False)
    assert document_ingest(document.id).status == "done"
    conversation = chat_answer(a, QUESTION)["conversation_id"]  # A's database works: its pool is warm
    for _ in range(2):
        timed_chat(b)  # warm-up
    baseline = [timed_chat(b) for _ in range(RUNS)]

    proxy.silent()
    outcomes = []

    def a_chat():
        try:
            outcomes.append(chat_answer(a, QUESTION, conversation)["stored"])
        finally:
            connection.close()

    threads = [threading.Thread(target=a_chat) for _ in range(A_CHATS)]
    a_started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # A's chats are now waiting on A's silent database (history reads, stores)
    during = [timed_chat(b) for _ in range(RUNS)]
    a_in_flight = sum(thread.is_alive() for thread in threads)
    for thread in threads:
        thread.join(30)
    a_seconds = time.monotonic() - a_started

    base, stalled = statistics.median(baseline), statistics.median(during)
    fault_record("conversations (account A)", "silent after working", "account B's chat (defaults)", "ok", stalled,
                 baseline=round(base, 3), during=[round(x, 3) for x in during], a_chats=A_CHATS,
                 a_in_flight_at_end=a_in_flight, a_seconds=round(a_seconds, 2))
    assert a_in_flight == A_CHATS  # every A chat was still waiting while B was measured
    assert stalled <= bound(base), (baseline, during)
    assert sorted(outcomes) == ["queued"] * A_CHATS  # A's exchanges are kept in the outbox, not lost
    assert Outbox.objects.filter(chatbot=a).count() == 2 * A_CHATS


def ready_in(chatbot, title: str, timeout: float = 60) -> float:
    """Add a small document through the Celery worker; seconds until it is Ready."""
    started = time.monotonic()
    document, _ = document_add(chatbot, title=title, text=f"{TEXT} ({title})")
    while time.monotonic() - started < timeout:
        document.refresh_from_db()
        if document.status == Document.Status.DONE:
            return time.monotonic() - started
        assert document.status != Document.Status.FAILED, document.error_message
        time.sleep(0.02)
    raise AssertionError(f"{title} was not ready within {timeout} s")


@pytest.mark.django_db(transaction=True)  # plans come back through make_user (conftest._ensure_plans)
@pytest.mark.parametrize("stall", ["outbox retries", "ingestion into a silent vector store"])
def test_another_accounts_document_is_ready_as_fast_while_one_accounts_tasks_wait_on_its_database(
        celery_worker, accounts, customer_db, proxy, stall, fault_record):
    a, b = accounts
    for n in range(2):  # two at once, so that both worker processes have loaded the embedding model
        document_add(b, title=f"Warm-up {n}a", text=f"{TEXT} ({n}a)")
        ready_in(b, f"Warm-up {n}b")
    deadline = time.monotonic() + 30
    while b.documents.exclude(status=Document.Status.DONE).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    baseline = [ready_in(b, f"Baseline {n}") for n in range(3)]

    proxy.silent()
    if stall == "outbox retries":
        own_database(a, "conversations", customer_db, proxy)
        for n in range(6):  # the first waits for the connect timeout here, the rest are refused by the breaker
            assert conversation_append(a, message_new("c1", "user", f"Question {n}")) == "queued"
        time.sleep(2.3)  # their deliveries start in the worker 2 s after they were queued
    else:
        own_database(a, "vector_store", customer_db, proxy)
        for n in range(4):
            document_add(a, title=f"A document {n}", text=f"{TEXT} A{n}")
        time.sleep(0.3)
    during, waiting = [], []
    for n in range(3):
        during.append(ready_in(b, f"During {n}"))
        waiting.append(proxy.waiting)  # A's worker connections held open, waiting on A's silent database

    base, stalled = statistics.median(baseline), statistics.median(during)
    fault_record(f"{'conversations' if stall == 'outbox retries' else 'vector_store'} (account A)", "silent",
                 f"account B's ingestion during A's {stall}", "ok", stalled, baseline=round(base, 3),
                 during=[round(x, 3) for x in during], a_waiting=waiting)
    assert any(waiting), "A's tasks were not waiting on A's database while B was measured"
    assert stalled <= bound(base), (baseline, during)
    proxy.forward()  # A's work is kept: it goes through once A's database answers (the retries continue)

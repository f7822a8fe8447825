"""WizChat's own servers restarted under it, nothing else restarted.

- The broker (the Redis of FalkorDB that Celery uses) restarted while a Celery worker runs: work queued after it
  is back completes on the same worker, queued from the same (web) process; work queued while it is down is
  reported on its row with a clear message and Retry (never left "queued" or "running"), and Retry completes it.
  A broker of its own (a second embedded FalkorDB): other tests keep theirs.
- The platform PostgreSQL restarted under the dashboard as `make run` serves it (gunicorn, gthread): while it is
  down a page says so with 503 and Retry-After (not a 500, not a traceback); the first requests after it is back
  answer 200, the web server not restarted. A PostgreSQL of its own, migrated for the purpose."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from byoi.models import ConnectionTest
from chatbots.ingestion import document_add, document_retry
from chatbots.models import Document
from chatbots.services import chatbot_create
from tests.peers import PEERS
from wizchat import embedded
from wizchat.run import web_server_command

BASE = Path(__file__).resolve().parent.parent
THREADS = 4  # the dashboard's gunicorn threads (one worker process)
TEXT = "\n\n".join(f"Section {n}: Acme Corporation ships the Wombatrix Engine to Globex Industries in Basel."
                   for n in range(12))


# --- the broker ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def publishing_to(url: str):
    """This process's Celery app sends to `url` (as a web process configured with it would), then back."""
    from wizchat.celery import app

    def reset():  # the next send builds its pools from the URL now in force (kombu keeps the old ones)
        app._pool = None
        app.amqp._producer_pool = None

    previous = os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url
    os.environ["CELERY_BROKER_URL"] = url  # Celery reads it before its configuration
    app.conf.broker_url = url
    reset()
    try:
        yield app
    finally:
        if previous[0] is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous[0]
        app.conf.broker_url = previous[1]
        reset()


@pytest.fixture
def broker(tmp_path):
    server = embedded.EmbeddedFalkor(tmp_path / "broker", embedded.free_port(), embedded.new_password())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def worker(broker, tmp_path, transactional_db):
    """A Celery worker on that broker and the test database; this process publishes to the same broker."""
    env = dict(os.environ, DATABASE_URL=PEERS.platform_pg.url(settings.DATABASES["default"]["NAME"]),
               CELERY_BROKER_URL=broker.url(1), CELERY_RESULT_BACKEND=broker.url(1))
    log = tmp_path / "celery.log"
    proc = embedded.start_celery_worker(env, log, concurrency=1)
    with publishing_to(broker.url(1)) as app:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        yield proc
    embedded.stop_process(proc)


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def document_status(document) -> str:
    document.refresh_from_db()
    return document.status


def llm_test(owner, chatbot, openai_server) -> ConnectionTest:
    from byoi.services import connection_test_start

    values = openai_server.llm_settings()
    secret = values.pop("api_key")
    return connection_test_start(owner.membership.account, "llm", values, {"api_key": secret}, chatbot=chatbot,
                                 rate_limit=False)


def test_after_the_broker_restarts_queued_work_completes_on_the_same_worker(worker, broker, owner, openai_server,
                                                                           fault_record):
    chatbot = chatbot_create(owner.membership.account, name="Broker bot")
    broker.stop()
    broker.start()  # same port, same data
    back = time.monotonic()
    document, _ = document_add(chatbot, title="After the restart", text=TEXT)
    assert wait_for(lambda: document_status(document) == Document.Status.DONE, 60), document.error_message
    ingested = time.monotonic() - back
    test = llm_test(owner, chatbot, openai_server)
    assert wait_for(lambda: ConnectionTest.objects.get(pk=test.pk).state == ConnectionTest.State.OK, 30)
    assert worker.poll() is None  # the same worker process all along
    fault_record("WizChat broker (Redis)", "restarted", "ingestion queued after it", document.status, ingested, 0)


def test_work_queued_while_the_broker_is_down_says_so_and_retry_completes_it(worker, broker, owner, openai_server,
                                                                           fault_record):
    chatbot = chatbot_create(owner.membership.account, name="Broker bot")
    broker.stop()
    started = time.monotonic()
    document, _ = document_add(chatbot, title="During the outage", text=TEXT)  # the web request returns
    seconds = time.monotonic() - started
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED and document.error_code == "unavailable"
    assert "task queue could not be reached" in document.error_message
    test = llm_test(owner, chatbot, openai_server)
    test.refresh_from_db()
    assert test.state == ConnectionTest.State.FAILED and test.error_code == "unavailable"
    assert "task queue could not be reached" in test.steps[-1]["message"]
    assert seconds < 5

    broker.start()
    document_retry(document)
    assert wait_for(lambda: document_status(document) == Document.Status.DONE, 60), document.error_message
    again = llm_test(owner, chatbot, openai_server)
    assert wait_for(lambda: ConnectionTest.objects.get(pk=again.pk).state == ConnectionTest.State.OK, 30)
    assert worker.poll() is None
    fault_record("WizChat broker (Redis)", "down", "ingestion queued meanwhile", document.error_code or "unavailable",
                 seconds, 0)


@pytest.fixture
def broker_down(broker, transactional_db):
    """This process publishes to a broker that has stopped (no worker needed: nothing can be delivered)."""
    with publishing_to(broker.url(1)):
        broker.stop()
        yield broker


def test_a_data_copy_started_while_the_broker_is_down_fails_with_retry(broker_down, owner):
    from byoi.models import DataMove
    from byoi.moves import data_move_start

    chatbot = chatbot_create(owner.membership.account, name="Broker bot")
    move = DataMove.objects.create(chatbot=chatbot, switch_on=["vector_store"])
    started = time.monotonic()
    data_move_start(move)
    move.refresh_from_db()
    assert move.state == DataMove.State.FAILED and move.error_code == "unavailable"
    assert "task queue could not be reached" in move.error_message
    assert time.monotonic() - started < 5


def test_a_message_queued_for_the_outbox_while_the_broker_is_down_waits_for_the_next_one(broker_down, owner):
    from byoi.backends.base import Message
    from conversations.models import Outbox
    from conversations.services import message_new, outbox_put

    chatbot = chatbot_create(owner.membership.account, name="Broker bot")
    message: Message = message_new("c-1", "user", "Where is the Wombatrix Engine shipped?")
    outbox_put(chatbot, message, None)  # the broker refuses the delivery task: no error escapes into the chat
    assert list(Outbox.objects.filter(chatbot=chatbot).values_list("message_id", flat=True)) == [message.id]


def test_deleting_a_chatbot_while_the_broker_is_down_still_deletes_it(broker_down, owner, caplog):
    from chatbots.models import Chatbot
    from chatbots.services import chatbot_delete

    chatbot = chatbot_create(owner.membership.account, name="Broker bot")
    chatbot_id = chatbot.pk
    chatbot_delete(chatbot)
    assert not Chatbot.objects.filter(pk=chatbot_id).exists()
    assert f"Deleted chatbot {chatbot_id}: the purge of its data" in caplog.text


# --- the platform PostgreSQL --------------------------------------------------------------------------------------

SESSION_SCRIPT = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from chatbots.services import chatbot_create
from wizchat.accounts import account_signup
user = account_signup(email="restart@example.com", password="correct horse battery", team_name="Restart",
                      plan_slug="pro")
chatbot = chatbot_create(user.membership.account, name="Restart bot")
session = SessionStore()
session[SESSION_KEY], session[BACKEND_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key, chatbot.id)
"""


@pytest.fixture
def dashboard(tmp_path):
    """A PostgreSQL of its own, migrated, and the dashboard on gunicorn as `make run` starts it."""
    pg = embedded.EmbeddedPostgres(tmp_path / "pg", embedded.free_port(), embedded.new_password())
    pg.start()
    server = None
    try:
        pg.ensure_database("wizchat")
        env = dict(os.environ, DATABASE_URL=pg.url("wizchat"), WIZCHAT_WEB_WORKERS="1",
                   WIZCHAT_WEB_THREADS=str(THREADS))
        manage = [sys.executable, str(BASE / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True, cwd=str(BASE))
        out = subprocess.run([*manage, "shell", "-c", SESSION_SCRIPT], env=env, check=True, cwd=str(BASE),
                             capture_output=True, text=True).stdout.split()
        session_key, chatbot_id = out[-2], out[-1]
        port = embedded.free_port()
        with open(tmp_path / "web.log", "ab") as log:
            server = subprocess.Popen(web_server_command("127.0.0.1", str(port)), env=env, cwd=str(BASE),
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        embedded.wait_for_port("127.0.0.1", port, 60, server, "web server")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", cookies={"sessionid": session_key}, timeout=30)
        yield {"pg": pg, "server": server, "client": client, "chatbot": chatbot_id, "log": tmp_path / "web.log"}
        client.close()
    finally:
        embedded.stop_process(server)
        pg.discard()


def pages(dashboard) -> list[str]:
    return ["/dashboard/chatbots/", f"/dashboard/chatbots/{dashboard['chatbot']}/"]


def get_all(dashboard, times: int = 4) -> list[httpx.Response]:
    """Every page `times` over, at once: each of the server's threads serves some and keeps its connection."""
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(dashboard["client"].get, pages(dashboard) * times))


def test_the_dashboard_says_its_database_is_unavailable_and_recovers_on_its_own(dashboard, fault_record):
    pg = dashboard["pg"]
    for response in get_all(dashboard):
        assert response.status_code == 200 and "Restart bot" in response.text
    pid = dashboard["server"].pid

    pg.stop()
    for response in get_all(dashboard, 2):
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "briefly unavailable" in response.text and "Traceback" not in response.text

    pg.start()
    back = time.monotonic()
    first = get_all(dashboard)
    seconds = time.monotonic() - back
    assert [r.status_code for r in first] == [200] * len(first)
    assert all("Restart bot" in r.text for r in first)
    assert dashboard["server"].pid == pid and dashboard["server"].poll() is None  # not restarted
    fault_record("WizChat PostgreSQL", "restarted", "dashboard", "503 while down", seconds, 0)

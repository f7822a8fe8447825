import json
import socket
import threading
import time

import psycopg
import pytest
from psycopg import sql

from byoi.services import byoi_set_enabled, component_save
from conversations import services
from conversations.models import Outbox
from tests.peers import PEERS


class TcpProxy:
    """A real TCP forwarder to the customer's PostgreSQL that a test can cut and restore, as a firewall would."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener = None
        self._conns: list[socket.socket] = []

    def up(self):
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(16)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self):
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._conns.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(autouse=True)
def no_breaker_cooldown(settings):
    """These tests bring the database back and write at once: no cool-down (tests/test_faults_breaker.py has it)."""
    settings.BYOI_BREAKER_COOLDOWN = 0


@pytest.fixture
def proxy():
    p = TcpProxy(PEERS.customer_pg.port)
    yield p
    p.down()


@pytest.fixture
def custom_conversations(chatbot, customer_db, proxy):
    component_save(chatbot, "conversations", values={**customer_db, "port": proxy.port},
                   secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    return customer_db


def stored_in_customer_db(db, chatbot) -> list[tuple]:
    admin = PEERS.customer_pg
    table = f"wizchat_messages_{chatbot.id.hex}"
    with psycopg.connect(admin.dsn(db["database"])) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]
        if not exists:
            return []
        return conn.execute(sql.SQL("SELECT id, content FROM {} ORDER BY created").format(
            sql.Identifier(table))).fetchall()


def test_it_stores_a_message_once_per_id(chatbot):
    message = services.message_new("c1", "user", "Hello")
    assert services.conversation_append(chatbot, message) == "stored"
    assert services.conversation_append(chatbot, message) == "duplicate"
    assert [m.content for m in services.conversation_history(chatbot, "c1")] == ["Hello"]


def test_it_stores_messages_in_the_customers_database(chatbot, custom_conversations, proxy):
    proxy.up()
    services.conversation_append(chatbot, services.message_new("c1", "user", "Where do I live?"))
    assert [r[1] for r in stored_in_customer_db(custom_conversations, chatbot)] == ["Where do I live?"]


def test_it_queues_a_message_when_the_customers_database_is_unreachable(chatbot, custom_conversations):
    outcome = services.conversation_append(chatbot, services.message_new("c1", "user", "Queued question"))
    row = Outbox.objects.get()
    assert outcome == "queued"
    assert row.error_code == "refused"


def test_it_keeps_outbox_content_encrypted_at_rest(chatbot, custom_conversations):
    from django.db import connection

    services.conversation_append(chatbot, services.message_new("c1", "user", "A confidential question"))
    with connection.cursor() as cur:
        cur.execute("SELECT payload::text FROM conversations_outbox")
        raw = cur.fetchone()[0]
    assert "confidential" not in raw


def test_it_delivers_the_outbox_once_the_database_is_back(chatbot, custom_conversations, proxy):
    message = services.message_new("c1", "user", "Delivered later")
    services.conversation_append(chatbot, message)
    proxy.up()
    assert services.outbox_deliver(Outbox.objects.get().pk) == "delivered"
    assert not Outbox.objects.exists()
    assert stored_in_customer_db(custom_conversations, chatbot) == [(message.id, "Delivered later")]


def test_it_delivers_an_outbox_message_twice_without_duplicating_it(chatbot, custom_conversations, proxy):
    message = services.message_new("c1", "user", "Only once")
    services.conversation_append(chatbot, message)
    row = Outbox.objects.get()
    proxy.up()
    services.outbox_deliver(row.pk)
    # A retry that raced the first delivery (the row came back): the message id keeps it single.
    Outbox.objects.create(message_id=message.id, chatbot=chatbot, payload=json.dumps(message.__dict__))
    services.outbox_deliver(Outbox.objects.get().pk)
    assert len(stored_in_customer_db(custom_conversations, chatbot)) == 1


def test_it_keeps_the_order_behind_queued_messages(chatbot, custom_conversations, proxy):
    services.conversation_append(chatbot, services.message_new("c1", "user", "first"))
    proxy.up()
    services.conversation_append(chatbot, services.message_new("c1", "assistant", "second"))
    assert [r[1] for r in stored_in_customer_db(custom_conversations, chatbot)] == ["first", "second"]


def test_it_counts_a_failed_delivery(chatbot, custom_conversations):
    services.conversation_append(chatbot, services.message_new("c1", "user", "Still down"))
    row = Outbox.objects.get()
    with pytest.raises(services.ComponentFailed):
        services.outbox_deliver(row.pk)
    row.refresh_from_db()
    assert row.attempts == 1


@pytest.mark.django_db(transaction=True)  # plans come back through make_user (conftest._ensure_plans)
def test_it_delivers_the_outbox_from_a_celery_retry(celery_worker, owner, customer_db, proxy):
    from chatbots.services import chatbot_create

    chatbot = chatbot_create(owner.membership.account, name="Outbox bot")
    component_save(chatbot, "conversations", values={**customer_db, "port": proxy.port},
                   secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    message = services.message_new("c1", "user", "Saved by the worker")
    assert services.conversation_append(chatbot, message) == "queued"
    proxy.up()
    deadline = time.monotonic() + 90
    while Outbox.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Outbox.objects.exists()
    assert stored_in_customer_db(customer_db, chatbot) == [(message.id, "Saved by the worker")]

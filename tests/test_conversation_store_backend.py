"""PgConversationStore against a real customer PostgreSQL (least-privilege role owning its database)."""

import threading
import uuid

import psycopg
import pytest

from byoi.backends.base import BackendError, Message
from byoi.backends.conversation_store import PgConversationStore
from tests.peers import PEERS


@pytest.fixture
def store(customer_db):
    backend = PgConversationStore(customer_db)
    yield backend
    backend.close()


def message(conversation: str, n: int, role: str = "user", **kw) -> Message:
    return Message(id=kw.pop("id", f"{conversation}-{n}"), conversation_id=conversation, role=role,
                   content=kw.pop("content", f"message {n}"), created=kw.pop("created", f"2026-01-01T10:00:{n:02d}+00:00"),
                   **kw)


def admin_query(customer_db, query, params=()):
    with psycopg.connect(PEERS.customer_pg.dsn(customer_db["database"])) as conn:
        return conn.execute(query, params).fetchall()


def test_it_stores_a_message_once_when_appended_twice(store):
    bot = uuid.uuid4()

    first = store.append(bot, message("c1", 1))
    second = store.append(bot, message("c1", 1, content="a retried delivery"))

    assert (first, second, store.count(bot)) == (True, False, 1)


def test_it_keeps_the_first_content_of_a_duplicate_message(store):
    bot = uuid.uuid4()
    store.append(bot, message("c1", 1, content="original"))

    store.append(bot, message("c1", 1, content="a retried delivery"))

    assert [m.content for m in store.history(bot, "c1")] == ["original"]


def test_it_returns_history_oldest_first(store):
    bot = uuid.uuid4()
    for n in (3, 1, 2):
        store.append(bot, message("c1", n, role="user" if n % 2 else "assistant"))

    history = store.history(bot, "c1")

    assert [m.content for m in history] == ["message 1", "message 2", "message 3"]
    assert history[1].role == "assistant"


def test_it_limits_history_to_the_latest_messages(store):
    bot = uuid.uuid4()
    for n in range(1, 6):
        store.append(bot, message("c1", n))

    assert [m.content for m in store.history(bot, "c1", limit=2)] == ["message 4", "message 5"]


def test_it_keeps_conversations_apart(store):
    bot = uuid.uuid4()
    store.append(bot, message("c1", 1))
    store.append(bot, message("c2", 2))

    assert [m.conversation_id for m in store.history(bot, "c2")] == ["c2"]


def test_it_lists_conversations_newest_first_with_counts(store):
    bot = uuid.uuid4()
    store.append(bot, message("old", 1))
    store.append(bot, message("old", 2))
    store.append(bot, message("new", 9))

    conversations = store.conversations(bot)

    assert [(c["id"], c["messages"]) for c in conversations] == [("new", 1), ("old", 2)]
    assert conversations[1]["started"].startswith("2026-01-01T10:00:01")


def test_it_round_trips_metadata_and_time(store):
    bot = uuid.uuid4()
    store.append(bot, message("c1", 1, metadata={"sources": ["doc:0"], "tokens": 12}))

    stored = store.history(bot, "c1")[0]

    assert stored.metadata == {"sources": ["doc:0"], "tokens": 12}
    assert stored.created.startswith("2026-01-01T10:00:01")


def test_it_stores_the_current_time_when_none_is_given(store):
    bot = uuid.uuid4()

    store.append(bot, message("c1", 1, created=""))

    assert store.history(bot, "c1")[0].created[:4] >= "2026"


def test_it_refuses_a_time_that_is_not_iso_8601(store):
    with pytest.raises(BackendError) as caught:
        store.append(uuid.uuid4(), message("c1", 1, created="yesterday"))

    assert caught.value.code == "config"


def test_it_names_the_table_from_the_chatbot_uuid(store, customer_db):
    bot = uuid.uuid4()

    store.provision(bot)

    assert admin_query(customer_db, "SELECT to_regclass(%s) IS NOT NULL", [f"wizchat_messages_{bot.hex}"]) == [(True,)]


def test_it_records_the_schema_version(store, customer_db):
    bot = uuid.uuid4()
    store.provision(bot)

    rows = admin_query(customer_db, "SELECT kind, version FROM wizchat_schema_version WHERE table_name = %s",
                       [store.table(bot)])

    assert rows == [("conversations", 1)]


def test_it_provisions_twice_as_a_no_op(store, customer_db):
    bot = uuid.uuid4()
    store.append(bot, message("c1", 1))

    PgConversationStore(customer_db).provision(bot)

    assert store.count(bot) == 1


def test_it_provisions_from_two_threads_at_once(customer_db):
    bot = uuid.uuid4()
    stores = [PgConversationStore(customer_db, operation_timeout=10 + i) for i in range(2)]
    barrier = threading.Barrier(2)
    errors = []

    def provision(backend):
        barrier.wait()
        try:
            backend.provision(bot)
        except Exception as error:  # collected: the assertion is in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=provision, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert errors == []


def test_it_refuses_a_chatbot_id_that_is_not_a_uuid(store):
    with pytest.raises(BackendError) as caught:
        store.append("bot; DROP TABLE wizchat_schema_version", message("c1", 1))

    assert caught.value.code == "config"


def test_it_stores_hostile_content_verbatim(store):
    bot = uuid.uuid4()
    hostile = "'); DROP TABLE wizchat_schema_version; -- \u2603"

    store.append(bot, message(hostile, 1, content=hostile))

    assert store.history(bot, hostile)[0].content == hostile


def test_it_answers_empty_for_a_chatbot_without_a_table(store):
    bot = uuid.uuid4()

    assert (store.conversations(bot), store.history(bot, "c1"), store.count(bot)) == ([], [], 0)


def test_it_reports_an_unknown_database_by_name(customer_db):
    backend = PgConversationStore({**customer_db, "database": "no_such_db"})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "config"
    assert "no_such_db" in caught.value.message


def test_it_recreates_a_table_its_owner_dropped_on_the_next_append(store, customer_db):
    bot = uuid.uuid4()
    store.append(bot, message("c1", 1))
    with psycopg.connect(PEERS.customer_pg.dsn(customer_db["database"]), autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{store.table(bot)}"')

    stored = store.append(bot, message("c1", 2))

    assert (stored, [m.content for m in store.history(bot, "c1")]) == (True, ["message 2"])

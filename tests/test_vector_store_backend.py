"""PgVectorStore against a real customer PostgreSQL + pgvector (least-privilege role owning its database)."""

import math
import threading
import uuid

import psycopg
import pytest

from byoi.backends.base import BackendError, Chunk
from byoi.backends.vector_store import PgVectorStore
from tests.peers import PEERS


def unit(dimensions: int, axis: int, tilt: float = 0.0) -> list[float]:
    vector = [0.0] * dimensions
    vector[axis % dimensions] = 1.0
    vector[(axis + 1) % dimensions] = tilt
    norm = math.sqrt(1 + tilt * tilt)
    return [v / norm for v in vector]


def chunk(document_id: str, ordinal: int, embedding: list[float], text: str | None = None) -> Chunk:
    return Chunk(id=f"{document_id}:{ordinal}", document_id=document_id, ordinal=ordinal,
                 text=text or f"{document_id} part {ordinal}", embedding=embedding, metadata={"title": document_id})


@pytest.fixture
def store(customer_db):
    backend = PgVectorStore(customer_db)
    yield backend
    backend.close()


def admin_query(customer_db, query, params=()):
    with psycopg.connect(PEERS.customer_pg.dsn(customer_db["database"])) as conn:
        return conn.execute(query, params).fetchall()


def test_it_returns_the_nearest_chunk_first(store):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0)), chunk("b", 0, unit(8, 3)), chunk("c", 0, unit(8, 5))])

    hits = store.search(bot, unit(8, 3, tilt=0.1), k=2)

    assert hits[0].chunk_id == "b:0"
    assert hits[0].text == "b part 0"
    assert hits[0].metadata == {"title": "b"}
    assert hits[0].score < hits[1].score


def test_it_does_not_duplicate_a_chunk_upserted_twice(store):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0)), chunk("a", 1, unit(8, 1))])

    store.upsert(bot, [chunk("a", 0, unit(8, 2), text="rewritten")])

    assert store.count(bot) == 2


def test_it_replaces_the_text_and_vector_of_an_upserted_chunk(store):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0)), chunk("a", 1, unit(8, 1))])

    store.upsert(bot, [chunk("a", 0, unit(8, 6), text="rewritten")])

    hit = store.search(bot, unit(8, 6), k=1)[0]
    assert (hit.chunk_id, hit.text) == ("a:0", "rewritten")


def test_it_deletes_only_the_chunks_of_one_document(store):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0)), chunk("a", 1, unit(8, 1)), chunk("b", 0, unit(8, 2))])

    deleted = store.delete_document(bot, "a")

    assert deleted == 2
    assert [h.document_id for h in store.search(bot, unit(8, 0), k=5)] == ["b"]


def test_it_stores_3072_dimensions_as_halfvec(store, customer_db):
    bot = uuid.uuid4()
    store.provision(bot, 3072)

    rows = admin_query(customer_db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                    "WHERE attrelid = to_regclass(%s) AND attname = 'embedding'", [store.table(bot)])

    assert rows == [("halfvec(3072)",)]


def test_it_indexes_3072_dimensions_with_hnsw_cosine(store, customer_db):
    bot = uuid.uuid4()
    store.provision(bot, 3072)

    rows = admin_query(customer_db, "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                       [store.table(bot), "%hnsw%"])

    assert len(rows) == 1
    assert "halfvec_cosine_ops" in rows[0][0]


def test_it_round_trips_3072_dimension_vectors(store):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(3072, 10)), chunk("b", 0, unit(3072, 2000))])

    assert store.search(bot, unit(3072, 2000, tilt=0.2), k=1)[0].chunk_id == "b:0"


def test_it_stores_384_dimensions_as_vector_with_hnsw(store, customer_db):
    bot = uuid.uuid4()
    store.provision(bot, 384)

    rows = admin_query(customer_db, "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                       [store.table(bot), "%hnsw%"])

    assert "vector_cosine_ops" in rows[0][0]


def test_it_provisions_twice_as_a_no_op(store, customer_db):
    bot = uuid.uuid4()
    store.provision(bot, 16)
    store.upsert(bot, [chunk("a", 0, unit(16, 0))])

    PgVectorStore(customer_db).provision(bot, 16)

    assert store.count(bot) == 1


def test_it_records_the_schema_version(store, customer_db):
    bot = uuid.uuid4()
    store.provision(bot, 16)

    rows = admin_query(customer_db, "SELECT kind, version, dimensions FROM wizchat_schema_version "
                                    "WHERE table_name = %s", [store.table(bot)])

    assert rows == [("vector_store", 1, 16)]


def test_it_provisions_from_two_threads_at_once(customer_db):
    bot = uuid.uuid4()
    # Different timeouts: two pools, two connections racing to create the same table.
    stores = [PgVectorStore(customer_db, operation_timeout=10 + i) for i in range(2)]
    barrier = threading.Barrier(2)
    errors = []

    def provision(backend):
        barrier.wait()
        try:
            backend.provision(bot, 32)
        except Exception as error:  # collected: the assertion is in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=provision, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert errors == []
    assert admin_query(customer_db, "SELECT count(*) FROM pg_class WHERE relname = %s", [stores[0].table(bot)]) == [(1,)]


def test_it_refuses_vectors_of_another_dimension_than_the_table(store):
    bot = uuid.uuid4()
    store.provision(bot, 16)

    with pytest.raises(BackendError) as caught:
        store.upsert(bot, [chunk("a", 0, unit(8, 0))])

    assert caught.value.code == "dimension_mismatch"


def test_it_names_the_table_from_the_chatbot_uuid(store):
    bot = uuid.uuid4()

    assert store.table(bot) == f"wizchat_chunks_{bot.hex}"


def test_it_refuses_a_chatbot_id_that_is_not_a_uuid(store):
    with pytest.raises(BackendError) as caught:
        store.provision('x"; DROP TABLE wizchat_schema_version; --', 8)

    assert caught.value.code == "config"


def test_it_stores_hostile_document_ids_and_text_verbatim(store, customer_db):
    bot = uuid.uuid4()
    hostile = "doc'); DROP TABLE wizchat_schema_version; --"
    store.upsert(bot, [chunk(hostile, 0, unit(8, 0), text='"; DELETE FROM x; --')])

    hit = store.search(bot, unit(8, 0), k=1)[0]

    assert (hit.document_id, hit.text) == (hostile, '"; DELETE FROM x; --')
    assert admin_query(customer_db, "SELECT count(*) FROM wizchat_schema_version") == [(1,)]


def test_it_answers_empty_for_a_chatbot_without_a_table(store):
    bot = uuid.uuid4()

    assert (store.search(bot, unit(8, 0)), store.count(bot), store.delete_document(bot, "a")) == ([], 0, 0)


def test_it_keeps_a_table_it_did_not_create_untouched(store, customer_db):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0))])
    store.close()

    PgVectorStore(customer_db).provision(bot, 8)

    assert store.count(bot) == 1


def test_it_reports_a_wrong_password_as_auth(customer_db):
    backend = PgVectorStore({**customer_db, "password": "wrong-password"})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "auth"
    assert "wrong-password" not in caught.value.message


def test_it_refuses_a_private_address_before_connecting(customer_db):
    backend = PgVectorStore({**customer_db, "host": "10.255.255.1"})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "blocked_address"



def test_it_works_through_pgbouncer_with_verify_full(tls_customer_db, trust_test_ca):
    backend = PgVectorStore({**tls_customer_db, "ssl_mode": "verify-full"})
    bot = uuid.uuid4()

    backend.upsert(bot, [chunk("a", 0, unit(8, 0)), chunk("b", 0, unit(8, 4))])

    assert backend.search(bot, unit(8, 4), k=1)[0].chunk_id == "b:0"
    backend.close()


def test_it_reports_tls_for_verify_full_against_an_untrusted_certificate(tls_customer_db, trust_other_ca):
    backend = PgVectorStore({**tls_customer_db, "ssl_mode": "verify-full"})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "tls"


def test_it_reports_tls_for_a_host_name_the_certificate_does_not_list(tls_customer_db, trust_test_ca, pgbouncer):
    backend = PgVectorStore({**tls_customer_db, "ssl_mode": "verify-full", "host": pgbouncer.mismatch_host})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "tls"


def test_it_verifies_against_the_system_store_when_no_ca_is_configured(tls_customer_db, settings):
    settings.BYOI_CA_BUNDLE = ""
    backend = PgVectorStore({**tls_customer_db, "ssl_mode": "verify-full"})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "tls"


def test_it_says_the_server_requires_ssl_when_ssl_mode_is_disable(tls_customer_db):
    backend = PgVectorStore({**tls_customer_db, "ssl_mode": "disable"})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "tls"


def test_it_lists_the_documents_it_holds(store):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("b", 0, unit(8, 0)), chunk("a", 0, unit(8, 1)), chunk("a", 1, unit(8, 2))])

    assert store.document_ids(bot) == ["a", "b"]


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never says a word."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_it_reports_a_server_that_never_answers_as_timeout(customer_db, silent_server):
    backend = PgVectorStore({**customer_db, "port": silent_server}, connect_timeout=1)

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "timeout"


def test_it_cancels_a_statement_that_outlasts_the_operation_timeout(customer_db):
    from byoi.backends import pg

    with pytest.raises(BackendError) as caught:
        pg.run(customer_db, lambda conn: conn.execute("SELECT pg_sleep(3)"), connect_timeout=2, operation_timeout=0.5,
               name="test", atomic=True)

    assert caught.value.code == "timeout"


@pytest.fixture
def http_like_server():
    """A TCP server that answers every connection like a web server would, then hangs up."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            with client:
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    yield listener.getsockname()[1]
    stop.set()
    worker.join(2)
    listener.close()


def test_it_reports_a_server_that_is_not_postgresql_as_protocol(customer_db, http_like_server):
    backend = PgVectorStore({**customer_db, "port": http_like_server})

    with pytest.raises(BackendError) as caught:
        backend.count(uuid.uuid4())

    assert caught.value.code == "protocol"


def test_it_recovers_after_the_server_dropped_its_pooled_connections(store, customer_db):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0))])
    killed = admin_query(customer_db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                         [customer_db["username"]])
    assert killed

    assert store.count(bot) == 1


def test_it_returns_k_hits_when_k_exceeds_the_hnsw_search_width(store):
    import random

    rng = random.Random(7)
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", i, [rng.uniform(-1, 1) for _ in range(8)]) for i in range(160)])

    assert len(store.search(bot, unit(8, 0), k=130)) == 130


def test_it_recreates_a_table_its_owner_dropped_on_the_next_write(store, customer_db):
    bot = uuid.uuid4()
    store.upsert(bot, [chunk("a", 0, unit(8, 0))])
    with psycopg.connect(PEERS.customer_pg.dsn(customer_db["database"]), autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{store.table(bot)}"')

    store.upsert(bot, [chunk("b", 0, unit(8, 1))])

    assert [h.chunk_id for h in store.search(bot, unit(8, 1), k=5)] == ["b:0"]

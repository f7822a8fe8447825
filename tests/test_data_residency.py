"""A chatbot with all five components custom: after ingesting and chatting, the customer's infrastructure
holds the chunks, the graph and the messages and received the model calls — and the platform's own
databases hold none of that chatbot's content."""

import json

import psycopg
import pytest
import redis
from psycopg import sql

from byoi.services import byoi_set_enabled, component_save
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import Document, DocumentSource
from tests.peers import PEERS, customer_database, drop_database

MARKER = "Quokkaflux"  # a word that appears nowhere else, so finding it anywhere means this chatbot's content
TEXT = (f"The {MARKER} Protocol keeps every answer inside the customer's own infrastructure. "
        f"Acme Corporation runs the {MARKER} Protocol on Kubernetes.\n\n") * 6
QUESTION = f"What does the {MARKER} Protocol keep?"


@pytest.fixture
def conversations_db():
    db = customer_database()
    yield db
    drop_database(db)


@pytest.fixture
def byoi_chatbot(chatbot, customer_db, conversations_db, customer_falkor, openai_server):
    def save(kind, values, secret_name, secret):
        values = {k: v for k, v in values.items() if k != secret_name}
        component_save(chatbot, kind, values=values, secrets={secret_name: secret})

    save("llm", openai_server.llm_settings(), "api_key", openai_server.api_key)
    save("embeddings", openai_server.embeddings_settings(), "api_key", openai_server.api_key)
    save("vector_store", customer_db, "password", customer_db["password"])
    save("conversations", conversations_db, "password", conversations_db["password"])
    save("graph", {"host": "127.0.0.1", "port": customer_falkor.port, "ssl": False}, "password",
         customer_falkor.password)
    byoi_set_enabled(chatbot, True)
    return chatbot


@pytest.fixture
def used(byoi_chatbot, owner_client):
    """Ingest a document and ask a question through the chatbot page, as a customer would."""
    document, _ = document_add(byoi_chatbot, title="Residency", text=TEXT, queue=False)
    document = document_ingest(document.id)
    response = owner_client.post(f"/dashboard/chatbots/{byoi_chatbot.id}/chat/", {"question": QUESTION},
                                 HTTP_ACCEPT="text/event-stream")
    body = b"".join(response.streaming_content).decode()
    assert "event: error" not in body
    return document


def customer_rows(db: dict, table: str) -> list[tuple]:
    with psycopg.connect(PEERS.customer_pg.dsn(db["database"])) as conn:
        return conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()


def test_it_puts_the_chunks_in_the_customers_pgvector(used, byoi_chatbot, customer_db):
    rows = customer_rows(customer_db, f"wizchat_chunks_{byoi_chatbot.id.hex}")
    assert len(rows) == used.chunks_total
    assert all(MARKER in str(row) for row in rows)


def test_it_puts_the_graph_in_the_customers_falkordb(used, byoi_chatbot, customer_falkor):
    client = redis.Redis.from_url(customer_falkor.url(0))
    result = client.execute_command("GRAPH.QUERY", f"wizchat_{byoi_chatbot.id.hex}", "MATCH (n) RETURN count(n)")
    assert result[1][0][0] > 0


def test_it_puts_the_messages_in_the_customers_conversations_database(used, byoi_chatbot, conversations_db):
    rows = customer_rows(conversations_db, f"wizchat_messages_{byoi_chatbot.id.hex}")
    assert len(rows) == 2
    assert any(QUESTION in str(r) for r in rows)


def test_it_calls_the_customers_llm_and_embeddings_endpoints(used, openai_server):
    chat = openai_server.calls("/chat/completions")
    embeddings = openai_server.calls("/embeddings")
    assert any(QUESTION in json.dumps(c.body) for c in chat)
    assert any(MARKER in json.dumps(c.body) for c in embeddings)


def platform_tables_containing(text: str) -> list[str]:
    """Every table of the platform database with a row whose text form contains `text`."""
    from django.db import connection

    found = []
    with connection.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                    "AND table_schema NOT IN ('pg_catalog', 'information_schema')")
        for schema, table in cur.fetchall():
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{} AS t WHERE t::text ILIKE %s").format(
                sql.Identifier(schema), sql.Identifier(table)).as_string(cur.connection), [f"%{text}%"])
            if cur.fetchone()[0]:
                found.append(table)
    return found


def test_it_keeps_the_content_out_of_the_platform_postgresql(used):
    assert platform_tables_containing(MARKER) == []


def test_it_would_find_the_content_of_a_default_chatbot_on_the_platform(chatbot):
    # The control for the search above: without BYOI the same content is in the platform's pgvector.
    document, _ = document_add(chatbot, title="Residency", text=TEXT, queue=False)
    document_ingest(document.id)
    assert platform_tables_containing(MARKER) == [f"wizchat_chunks_{chatbot.id.hex}"]


def test_it_creates_no_platform_table_for_the_chatbot(used, byoi_chatbot):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE %s", [f"%{byoi_chatbot.id.hex}%"])
        assert cur.fetchall() == []


def test_it_creates_no_graph_for_the_chatbot_in_the_platform_falkordb(used, byoi_chatbot):
    client = redis.Redis.from_url(PEERS.falkor.url(0))
    graphs = [g.decode() if isinstance(g, bytes) else g for g in client.execute_command("GRAPH.LIST")]
    assert not [g for g in graphs if byoi_chatbot.id.hex in g]


def test_it_keeps_only_title_hash_and_status_on_the_document_row(used):
    row = Document.objects.filter(pk=used.pk).values().get()
    assert MARKER not in json.dumps(row, default=str)
    assert not DocumentSource.objects.filter(document=used).exists()


def test_it_shows_every_component_in_the_customers_infrastructure(used, byoi_chatbot, owner_client):
    body = owner_client.get(f"/dashboard/chatbots/{byoi_chatbot.id}/data-locations/",
                            HTTP_HX_REQUEST="true").content.decode()
    assert body.count("Your infrastructure (") == 5
    assert "WizChat default" not in body
    assert f'<span class="count">{used.chunks_total}</span> chunks' in body

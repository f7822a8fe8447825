"""Deleting a chatbot removes its data from WizChat's own stores, never from a customer's."""

import psycopg
import redis
from django.db import connection
from psycopg import sql

from byoi.services import component_save
from byoi.tasks import platform_data_purge_task
from chatbots.ingestion import document_add, document_ingest
from chatbots.services import chatbot_delete
from tests.peers import PEERS

TEXT = "Acme Rockets ship from Springfield. Acme Rockets use FalkorDB for their parts graph."


def platform_relations(chatbot_id) -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s", [f"%{chatbot_id.hex}%"])
        return [r[0] for r in cur.fetchall()]


def platform_graphs(chatbot_id) -> list[str]:
    client = redis.Redis.from_url(PEERS.falkor.url(0))
    names = [g.decode() if isinstance(g, bytes) else g for g in client.execute_command("GRAPH.LIST")]
    return [g for g in names if chatbot_id.hex in g]


def delete_and_purge(chatbot, django_capture_on_commit_callbacks):
    chatbot_id = chatbot.id
    with django_capture_on_commit_callbacks() as callbacks:
        chatbot_delete(chatbot)
    assert len(callbacks) == 1  # the purge is queued after the commit
    platform_data_purge_task.apply(args=[str(chatbot_id)]).get()
    chatbot.id = chatbot_id


def test_it_drops_a_deleted_chatbots_tables_and_graph_from_the_platform(chatbot, django_capture_on_commit_callbacks):
    document, _ = document_add(chatbot, title="Acme", text=TEXT, queue=False)
    document_ingest(document.id)
    assert platform_relations(chatbot.id)
    assert platform_graphs(chatbot.id)
    delete_and_purge(chatbot, django_capture_on_commit_callbacks)
    assert platform_relations(chatbot.id) == []
    assert platform_graphs(chatbot.id) == []


def test_it_is_harmless_for_a_chatbot_that_never_stored_anything(chatbot, django_capture_on_commit_callbacks):
    delete_and_purge(chatbot, django_capture_on_commit_callbacks)
    assert platform_relations(chatbot.id) == []


def test_it_leaves_the_customers_vector_store_untouched(chatbot, customer_db, django_capture_on_commit_callbacks):
    from byoi.services import byoi_set_enabled

    values = {k: v for k, v in customer_db.items() if k != "password"}
    component_save(chatbot, "vector_store", values=values, secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    document, _ = document_add(chatbot, title="Acme", text=TEXT, queue=False)
    document_ingest(document.id)
    table = f"wizchat_chunks_{chatbot.id.hex}"
    delete_and_purge(chatbot, django_capture_on_commit_callbacks)
    with psycopg.connect(PEERS.customer_pg.dsn(customer_db["database"])) as conn:
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
    assert rows >= 1

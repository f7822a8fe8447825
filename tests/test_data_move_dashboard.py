"""Their data follows a switch: a BYOI change saved in the dashboard that moves a chatbot's stores is held, the
customer is offered to copy the data, a Celery job copies it (byoi.datamove) with a progress bar, and the chatbot
switches only once the copy is verified. Real peers: the platform's PostgreSQL and FalkorDB, the customer's
PostgreSQL and FalkorDB, an OpenAI-protocol server (the customer's 3072-dimension embeddings), a Celery worker."""

import time

import pytest
from django.urls import reverse

import byoi
from byoi import moves, resolver
from byoi.models import BYOIComponent, DataMove
from chatbots.chat import chat_answer
from tests.fault_proxy import FaultProxy
from tests.peers import PEERS
from tests.test_byoi_migrate import (
    QUESTION,
    chunks_table,
    customer_count,
    customer_dimensions,
    default_count,
    graph_counts,
    ingest,
    messages_table,
    platform_graph_counts,
)

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def default_llm(settings, openai_server):
    """WizChat's default LLM is the OpenAI-protocol test server (the chat must answer)."""
    openai_server.as_default_llm(settings)
    yield settings
    resolver.clear_cache()


@pytest.fixture
def knowledge(chatbot, default_llm):
    """A document in the defaults (platform pgvector with MiniLM 384, platform FalkorDB) and two conversations."""
    from conversations.services import conversation_append, message_new

    document = ingest(chatbot)
    for conversation in ("c1", "c2"):
        conversation_append(chatbot, message_new(conversation, "user", f"Hello from {conversation}"),
                            message_new(conversation, "assistant", f"Answer in {conversation}"))
    return document


def pg_fields(prefix: str, db: dict, **overrides) -> dict:
    values = {**db, **overrides}
    return {f"{prefix}-enabled": "on", **{f"{prefix}-{k}": str(v) for k, v in values.items()}}


def stores_post(customer_db, customer_falkor, **extra) -> dict:
    return {"byoi-enabled": "on", **pg_fields("vector_store", customer_db), **pg_fields("conversations", customer_db),
            "graph-enabled": "on", "graph-host": "127.0.0.1", "graph-port": str(customer_falkor.port),
            "graph-password": customer_falkor.password, **extra}


def embeddings_post(openai_server) -> dict:
    values = openai_server.embeddings_settings()
    return {"embeddings-enabled": "on", **{f"embeddings-{k}": str(v) for k, v in values.items()}}


def save(client, chatbot, data):
    return client.post(reverse("byoi:settings", args=[chatbot.id]), data)


def offered(response) -> DataMove:
    assert response.status_code == 302, response.content.decode()[-2000:]
    move = DataMove.objects.get()
    assert response["Location"] == reverse("byoi:data_move", args=[move.id])
    return move


def poll_until_finished(client, move, seconds=120) -> str:
    url = reverse("byoi:data_move", args=[move.id])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = client.get(url, **HX)
        if response.status_code == 286:
            return response.content.decode()
        time.sleep(0.5)
    raise AssertionError(f"the data move did not finish: {DataMove.objects.get(pk=move.pk).state}")


def sources(chatbot) -> dict:
    chatbot.refresh_from_db()
    return byoi.resolve(chatbot).sources


@pytest.mark.django_db(transaction=True)
def test_a_switch_waits_for_the_copy_then_chat_answers_from_the_customers_store(
        owner_client, chatbot, knowledge, customer_db, customer_falkor, celery_worker):
    before = (default_count("vector_store", chatbot), default_count("conversations", chatbot),
              platform_graph_counts(chatbot))
    move = offered(save(owner_client, chatbot, stores_post(customer_db, customer_falkor)))
    # Saved, but held: the chatbot still uses WizChat's stores.
    assert {k: sources(chatbot)[k] for k in ("vector_store", "graph", "conversations")} == dict.fromkeys(
        ("vector_store", "graph", "conversations"), "default")
    page = owner_client.get(reverse("byoi:data_move", args=[move.id])).content.decode()
    assert "Copy my data to the new store" in page
    assert "manage.py" not in page and "byoi_migrate" not in page and "`" not in page

    started = owner_client.post(reverse("byoi:data_move_action", args=[move.id, "start"]), **HX)
    assert 'hx-trigger="load delay:1s, every 2s"' in started.content.decode()
    final = poll_until_finished(owner_client, move)

    assert "Switched" in final
    assert sources(chatbot)["vector_store"] == sources(chatbot)["graph"] == sources(chatbot)["conversations"] == \
        "custom"
    assert customer_count(customer_db, chunks_table(chatbot)) == knowledge.chunks_total
    assert customer_count(customer_db, messages_table(chatbot)) == 4
    assert graph_counts(customer_falkor, chatbot) == platform_graph_counts(chatbot)
    answer = chat_answer(chatbot, QUESTION)
    assert answer["error"] is None
    assert [source["title"] for source in answer["sources"]][:1] == ["Wombatrix"]
    # Never deleted: the old stores still hold everything.
    assert (default_count("vector_store", chatbot), default_count("conversations", chatbot),
            platform_graph_counts(chatbot)) == before


def test_a_dimension_change_is_confirmed_before_it_is_saved(owner_client, chatbot, knowledge, customer_db,
                                                            customer_falkor, openai_server):
    data = {**stores_post(customer_db, customer_falkor), **embeddings_post(openai_server)}
    page = save(owner_client, chatbot, data).content.decode()
    assert "The embeddings’ dimensions change." in page
    assert "384" in page and "3072" in page
    assert not BYOIComponent.objects.filter(chatbot=chatbot).exists()
    assert not DataMove.objects.exists()


def test_a_confirmed_dimension_change_reindexes_then_retrieval_works(owner_client, chatbot, knowledge, customer_db,
                                                                   customer_falkor, openai_server):
    data = {**stores_post(customer_db, customer_falkor), **embeddings_post(openai_server)}
    page = save(owner_client, chatbot, data).content.decode()
    token = page.split('name="byoi-confirm-dimensions" value="')[1].split('"')[0]
    move = offered(save(owner_client, chatbot, {**data, "byoi-confirm-dimensions": token}))
    assert move.reembed and "embeddings" in move.switch_on
    assert sources(chatbot)["embeddings"] == "default"  # the new embeddings wait for the re-index
    assert "Re-index my documents" in owner_client.get(reverse("byoi:data_move", args=[move.id])).content.decode()

    moves.data_move_start(move)
    move = moves.data_move_run(move.id)  # what the Celery task calls

    assert move.state == DataMove.State.DONE, move.error_message
    assert customer_dimensions(customer_db, chunks_table(chatbot)) == 3072
    assert sources(chatbot)["embeddings"] == "custom"
    answer = chat_answer(chatbot, QUESTION)
    assert answer["error"] is None
    assert [source["title"] for source in answer["sources"]][:1] == ["Wombatrix"]


def test_a_failure_mid_copy_shows_the_code_and_a_retry_completes_it(owner_client, chatbot, knowledge, customer_db,
                                                                    monkeypatch):
    proxy = FaultProxy(PEERS.customer_pg.port)
    try:
        data = {"byoi-enabled": "on", **pg_fields("vector_store", customer_db, port=proxy.port)}
        move = offered(save(owner_client, chatbot, data))
        monkeypatch.setattr(moves, "BATCH_SIZE", 3)
        saver = moves._saver

        def cut_after_first_batch(move):
            save_progress = saver(move)

            def on_batch(result):
                save_progress(result)
                proxy.set("refuse")  # the customer's database goes away mid-copy
            return on_batch

        monkeypatch.setattr(moves, "_saver", cut_after_first_batch)
        moves.data_move_start(move)
        move = moves.data_move_run(move.id)
        assert move.state == DataMove.State.FAILED
        assert sources(chatbot)["vector_store"] == "default"
        page = owner_client.get(reverse("byoi:data_move", args=[move.id])).content.decode()
        assert f'<code class="code">{move.error_code}</code>' in page
        assert move.error_code in ("refused", "timeout", "unavailable")
        assert move.error_hint and move.error_hint in page.replace("&#x27;", "'")
        assert "Retry" in page
        copied_before = customer_count(customer_db, chunks_table(chatbot))
        assert 0 < copied_before < knowledge.chunks_total

        proxy.set("forward")
        monkeypatch.setattr(moves, "_saver", saver)
        owner_client.post(reverse("byoi:data_move_action", args=[move.id, "start"]))
        assert DataMove.objects.get(pk=move.pk).state == DataMove.State.QUEUED
        move = moves.data_move_run(move.id)

        assert move.state == DataMove.State.DONE, move.error_message
        assert customer_count(customer_db, chunks_table(chatbot)) == knowledge.chunks_total
        assert move.verified["vector_store"] == {"source": knowledge.chunks_total, "missing": 0}
        assert sources(chatbot)["vector_store"] == "custom"
    finally:
        proxy.set("refuse")

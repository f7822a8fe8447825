import json

import pytest

from byoi.services import byoi_set_enabled, component_save
from chatbots.chat import chat_answer, chat_events
from chatbots.ingestion import document_add, document_ingest
from conversations.services import conversation_history, conversation_list

TEXT = (
    "BYOI is available on the Pro, Pro+, Business and Enterprise plans. The Free plan does not include BYOI.\n\n"
    "Custom FalkorDB stores the knowledge graph for GraphRAG. FalkorDB 4.0+ is required.\n\n"
    "The Custom Vector Store needs PostgreSQL 14+ with the pgvector extension."
)


@pytest.fixture
def knowledge(chatbot):
    document, _ = document_add(chatbot, title="BYOI guide", text=TEXT, queue=False)
    return document_ingest(document.id)


@pytest.fixture
def custom_llm(chatbot, openai_server):
    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    return openai_server


def sse(response) -> list[tuple[str, dict]]:
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def ask(client, chatbot, question="Which plans include BYOI?", **extra):
    return client.post(f"/dashboard/chatbots/{chatbot.id}/chat/", {"question": question, **extra},
                       HTTP_ACCEPT="text/event-stream")


def test_it_streams_the_answer_token_by_token(owner_client, chatbot, knowledge, custom_llm):
    response = ask(owner_client, chatbot)
    events = sse(response)
    tokens = [data["text"] for kind, data in events if kind == "token"]
    assert response["Content-Type"].startswith("text/event-stream")
    assert len(tokens) > 1
    assert "".join(tokens) == custom_llm.reply


def test_it_shows_the_sources_of_an_answer(owner_client, chatbot, knowledge, custom_llm):
    sources = next(data["sources"] for kind, data in sse(ask(owner_client, chatbot)) if kind == "sources")
    assert sources[0]["title"] == "BYOI guide"
    assert "Pro, Pro+, Business and Enterprise" in sources[0]["snippet"]


def test_it_prompts_the_llm_with_instructions_chunks_and_graph_facts(chatbot, knowledge, custom_llm):
    chat_answer(chatbot, "Which plans include BYOI?")
    system = custom_llm.calls("/chat/completions")[-1].body["messages"][0]["content"]
    assert "Be brief." in system
    assert "Pro, Pro+, Business and Enterprise plans" in system
    assert "Related facts from the knowledge graph" in system


def test_it_answers_in_full_without_javascript(owner_client, chatbot, knowledge, custom_llm):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/chat/", {"question": "Which plans?"})
    body = response.content.decode()
    assert response.status_code == 200
    assert custom_llm.reply in body
    assert "BYOI guide" in body


def test_it_stores_both_messages_in_the_conversations_backend(chatbot, knowledge, custom_llm):
    result = chat_answer(chatbot, "Which plans include BYOI?")
    messages = conversation_history(chatbot, result["conversation_id"])
    assert [(m.role, m.content) for m in messages] == [("user", "Which plans include BYOI?"),
                                                       ("assistant", custom_llm.reply)]


def test_it_continues_a_conversation_with_its_history(chatbot, knowledge, custom_llm):
    first = chat_answer(chatbot, "Which plans include BYOI?")
    chat_answer(chatbot, "And FalkorDB?", first["conversation_id"])
    roles = [m["role"] for m in custom_llm.calls("/chat/completions")[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_it_lists_the_history_on_the_chatbot_page(owner_client, chatbot, knowledge, custom_llm):
    result = chat_answer(chatbot, "Which plans include BYOI?")
    body = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/history/?conversation={result['conversation_id']}",
                            HTTP_HX_REQUEST="true").content.decode()
    assert "2 messages" in body
    assert "Which plans include BYOI?" in body


def test_it_names_a_failing_llm_and_its_fix_without_falling_back(owner_client, chatbot, knowledge, custom_llm):
    custom_llm.api_key = "sk-rotated-by-the-provider"
    response = ask(owner_client, chatbot)
    events = sse(response)
    error = next(data for kind, data in events if kind == "error")
    assert response.status_code == 200
    assert error["component"] == "LLM"
    assert error["code"] == "auth"
    assert "verify the API key" in error["hint"]
    assert not [data for kind, data in events if kind == "token"]


def test_it_names_a_failing_vector_store(chatbot, knowledge, custom_llm, customer_db):
    component_save(chatbot, "vector_store", values={**customer_db, "port": 9}, secrets={"password": "x"})
    result = chat_answer(chatbot, "Which plans include BYOI?")
    assert result["error"]["component"] == "Vector Store"
    assert "Your infrastructure" in result["error"]["message"]
    assert result["answer"] == ""


def test_it_refuses_an_empty_question(chatbot):
    assert chat_answer(chatbot, "   ")["error"]["message"] == "Type a question first."


def test_it_enforces_the_monthly_message_quota(chatbot, custom_llm):
    plan = chatbot.account.plan
    plan.max_messages_per_month = 1
    plan.save()
    chat_answer(chatbot, "First?")
    assert "messages a month" in chat_answer(chatbot, "Second?")["error"]["message"]


def test_it_answers_404_to_another_account(client, outsider, chatbot):
    client.force_login(outsider)
    assert ask(client, chatbot).status_code == 404


def test_it_shows_live_data_locations(owner_client, chatbot, knowledge, custom_llm):
    chat_answer(chatbot, "Which plans include BYOI?")
    body = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/data-locations/",
                            HTTP_HX_REQUEST="true").content.decode()
    assert f"Your infrastructure ({custom_llm.base_url})" in body
    assert f'<span class="count">{knowledge.chunks_total}</span> chunk' in body
    assert '<span class="count">2</span> messages' in body


def test_it_lists_the_conversations_newest_first(chatbot, custom_llm):
    first = chat_answer(chatbot, "One?")
    second = chat_answer(chatbot, "Two?")
    assert [c["id"] for c in conversation_list(chatbot)] == [second["conversation_id"], first["conversation_id"]]


def test_it_ends_the_stream_with_the_storage_outcome(chatbot, custom_llm):
    events = list(chat_events(chatbot, "Hello?"))
    assert events[0]["event"] == "meta"
    done = events[-1]
    assert {k: done[k] for k in ("event", "stored", "conversation_id")} == {
        "event": "done", "stored": "stored", "conversation_id": events[0]["conversation_id"]}
    assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"] > 0


@pytest.mark.slow
def test_it_answers_with_the_real_local_llm(chatbot, knowledge, llama_server, settings):
    from byoi.resolver import clear_cache

    settings.DEFAULT_LLM_ENDPOINT = llama_server.base_url
    settings.DEFAULT_LLM_MODEL = llama_server.model
    settings.BYOI_OPERATION_TIMEOUT = 120  # a CPU-only 135M model reading a 1k-token prompt on a busy machine
    clear_cache()
    result = chat_answer(chatbot, "Which plans include BYOI?")
    clear_cache()
    assert result["error"] is None, result["error"]
    assert result["answer"].strip()
    assert result["sources"][0]["title"] == "BYOI guide"


def test_it_shows_the_chat_documents_history_and_locations_on_the_chatbot_page(owner_client, chatbot, knowledge):
    body = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/").content.decode()
    assert "Test your chatbot" in body
    assert "BYOI guide" in body
    assert f"/dashboard/chatbots/{chatbot.id}/history/" in body
    assert f"/dashboard/chatbots/{chatbot.id}/data-locations/" in body


def test_it_seeds_a_demo_chatbot_that_answers_straight_away(db, openai_server, settings):
    from django.core.management import call_command

    from byoi.resolver import clear_cache
    from chatbots.demo import SAMPLE_QUESTION, SAMPLE_TITLE
    from chatbots.models import Chatbot

    openai_server.as_default_llm(settings)
    call_command("seed_demo")
    chatbot = Chatbot.objects.get(account__name="Demo team")
    result = chat_answer(chatbot, SAMPLE_QUESTION)
    clear_cache()
    assert chatbot.documents.get().status == "done"
    assert result["sources"][0]["title"] == SAMPLE_TITLE
    assert "Pro, Pro+, Business and Enterprise" in openai_server.calls("/chat/completions")[-1].body["messages"][0]["content"]


@pytest.mark.parametrize("suffix", ["history/", "data-locations/"])
def test_it_hides_history_and_data_locations_from_another_account(client, outsider, chatbot, suffix):
    client.force_login(outsider)
    assert client.get(f"/dashboard/chatbots/{chatbot.id}/{suffix}").status_code == 404


def test_it_lets_a_teammate_test_the_chatbot(client, teammate, chatbot, custom_llm):
    client.force_login(teammate)
    events = sse(ask(client, chatbot, "Hello?"))
    assert "".join(d["text"] for kind, d in events if kind == "token") == custom_llm.reply


def test_it_answers_and_queues_the_exchange_when_the_conversations_database_is_down(chatbot, custom_llm,
                                                                                   customer_db):
    from conversations.models import Outbox

    component_save(chatbot, "conversations", values={**customer_db, "port": 9},
                   secrets={"password": customer_db["password"]})
    result = chat_answer(chatbot, "Still there?")
    queued = [json.loads(row.payload) for row in Outbox.objects.order_by("created", "id")]
    assert result["answer"] == custom_llm.reply
    assert result["stored"] == "queued"
    assert [(m["role"], m["content"]) for m in queued] == [("user", "Still there?"), ("assistant", custom_llm.reply)]


def test_it_refuses_to_fall_back_to_defaults_when_the_plan_no_longer_allows_byoi(chatbot, custom_llm):
    from wizchat.models import Plan

    account = chatbot.account
    account.plan = Plan.objects.get(slug="free")
    account.save()
    chatbot.refresh_from_db()
    result = chat_answer(chatbot, "Which plans include BYOI?")
    assert result["error"]["component"] == "BYOI"
    assert "Upgrade" in result["error"]["hint"]
    assert result["answer"] == ""
    assert custom_llm.calls("/chat/completions") == []


def test_it_shows_messages_waiting_in_the_outbox(owner_client, chatbot, custom_llm, customer_db):
    component_save(chatbot, "conversations", values={**customer_db, "port": 9},
                   secrets={"password": customer_db["password"]})
    chat_answer(chatbot, "Still there?")
    body = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/data-locations/", HTTP_HX_REQUEST="true").content.decode()
    assert "2 messages waiting in WizChat's outbox" in body


@pytest.mark.parametrize("suffix,title", [("history/", "Conversation history"), ("data-locations/", "Data locations")])
def test_it_serves_history_and_data_locations_as_pages_without_javascript(owner_client, chatbot, suffix, title):
    body = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/{suffix}").content.decode()
    assert f"<title>{title} · {chatbot.name} · WizChat</title>" in body


def test_it_cites_a_document_by_its_current_title_after_a_rename(chatbot, knowledge, custom_llm):
    knowledge.title = "BYOI guide (2027 edition)"
    knowledge.save(update_fields=["title"])
    result = chat_answer(chatbot, "Which plans include BYOI?")
    assert {s["title"] for s in result["sources"]} == {"BYOI guide (2027 edition)"}
    assert "(BYOI guide (2027 edition))" in custom_llm.calls("/chat/completions")[-1].body["messages"][0]["content"]


def test_it_learns_what_is_indexed_and_the_titles_in_one_query(chatbot, knowledge, django_assert_num_queries):
    from chatbots.chat import knowledge_of

    with django_assert_num_queries(1):
        known = knowledge_of(chatbot, with_outbox=True)
    assert (known.has_chunks, known.has_graph, known.queued) == (True, True, False)
    assert known.titles == {str(knowledge.id): "BYOI guide"}


def test_it_looks_up_only_the_hits_titles_for_a_chatbot_with_many_documents(chatbot, knowledge, custom_llm,
                                                                           django_assert_max_num_queries):
    from chatbots.chat import TITLES_INLINE, knowledge_of
    from chatbots.models import Document

    Document.objects.bulk_create(Document(chatbot=chatbot, title=f"Doc {i}") for i in range(TITLES_INLINE + 200))
    with django_assert_max_num_queries(1):
        known = knowledge_of(chatbot, with_outbox=True)
    assert (known.has_chunks, known.titles) == (True, None)
    knowledge.title = "BYOI guide, renamed"
    knowledge.save(update_fields=["title"])
    result = chat_answer(chatbot, "Which plans include BYOI?")
    assert {s["title"] for s in result["sources"]} == {"BYOI guide, renamed"}


def test_it_knows_a_chatbot_without_indexed_documents_has_nothing_to_search(chatbot):
    from chatbots.chat import knowledge_of
    from chatbots.models import Document

    Document.objects.create(chatbot=chatbot, title="Still uploading")
    known = knowledge_of(chatbot)
    assert (known.has_chunks, known.has_graph, known.queued) == (False, False, None)

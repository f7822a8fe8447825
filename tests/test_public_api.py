"""The public API on the platform (OpenAI's chat-completions shape), called over real HTTP by the official
`openai` client: the platform runs in pytest-django's live server, the default LLM is a real OpenAI-protocol
server (tests.openai_server), the documents are ingested into the platform's default stores."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import uuid

import httpx
import openai
import pytest

from byoi.services import byoi_set_enabled, component_save
from chatbots.apikeys import apikey_authenticate, apikey_create, apikey_revoke, chatbot_pepper
from chatbots.ingestion import document_add, document_ingest
from conversations.services import conversation_history, conversation_list
from tests.test_chat import TEXT
from tests.test_data_residency import platform_tables_containing
from wizchat import embedded

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Which plans include BYOI?"


@pytest.fixture(autouse=True)
def platform(settings, openai_server):
    """The default LLM is `openai_server`; rate limits count in memory, fresh for each test."""
    from byoi.resolver import clear_cache
    from chatbots import publicapi

    openai_server.as_default_llm(settings)
    settings.RATE_LIMIT_STORAGE_URL = "memory://"

    def clear():
        clear_cache()
        publicapi._limiter.cache_clear()
        publicapi.gateway.cache_clear()

    clear()
    yield openai_server
    clear()


@pytest.fixture
def knowledge(chatbot):
    document, _ = document_add(chatbot, title="BYOI guide", text=TEXT, queue=False)
    return document_ingest(document.id)


@pytest.fixture
def key(chatbot, owner):
    return apikey_create(chatbot, "Website", user=owner)


@pytest.fixture
def base_url(live_server):
    return f"{live_server.url}/v1"


@pytest.fixture
def client_for(base_url):
    """openai.OpenAI clients for keys, closed after the test: a kept-alive connection keeps its server thread,
    and that thread its database connection, after the test."""
    made = []

    def make(api_key: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def api(client_for, key):
    return client_for(key[1])


def ask(api, chatbot, question=QUESTION, **kw):
    return api.chat.completions.create(model=chatbot.slug, messages=[{"role": "user", "content": question}], **kw)


def raw_sse(base_url, key, chatbot, **body) -> list[str]:
    """The `data:` payloads of a streamed answer, as they crossed the wire."""
    payload = {"model": chatbot.slug, "messages": [{"role": "user", "content": QUESTION}], "stream": True, **body}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=payload, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks)
    return [b[len("data: "):] for b in blocks]


def raw_http(live_server, request: bytes) -> bytes:
    """Send bytes as they are (httpx refuses header values with CR/LF, a hostile client does not)."""
    host, port = live_server.thread.host, live_server.thread.port
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


# --- answers --------------------------------------------------------------------------------------------------


def test_it_answers_in_openais_shape(api, chatbot, knowledge, platform):
    completion = ask(api, chatbot)
    choice = completion.choices[0]
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.created > 0
    assert completion.model == chatbot.slug
    assert (choice.index, choice.message.role, choice.finish_reason) == (0, "assistant", "stop")
    assert choice.message.content == platform.reply
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0


def test_it_gives_the_sources_in_the_wizchat_field(api, chatbot, knowledge):
    sources = ask(api, chatbot).model_extra["wizchat"]["sources"]
    assert sources[0]["title"] == "BYOI guide"


def test_it_answers_from_the_documents(api, chatbot, knowledge, platform):
    ask(api, chatbot)
    prompt = platform.calls("/chat/completions")[-1].body["messages"]
    assert "Pro, Pro+, Business and Enterprise plans" in prompt[0]["content"]
    assert prompt[-1] == {"role": "user", "content": QUESTION}


def test_it_streams_the_answer(api, chatbot, knowledge, platform):
    chunks = list(ask(api, chatbot, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert text == platform.reply
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens > 0


def test_it_puts_the_sources_on_the_final_stream_chunk(api, chatbot, knowledge):
    chunks = list(ask(api, chatbot, stream=True))
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1
    assert final[0].model_extra["wizchat"]["sources"][0]["title"] == "BYOI guide"


def test_it_ends_the_raw_stream_with_usage_then_done(base_url, key, chatbot, knowledge):
    payloads = raw_sse(base_url, key[1], chatbot, stream_options={"include_usage": True})
    usage = json.loads(payloads[-2])
    first = json.loads(payloads[0])
    assert payloads[-1] == "[DONE]"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({json.loads(p)["id"] for p in payloads[:-1]}) == 1


def test_it_sends_no_usage_chunk_unless_asked(base_url, key, chatbot):
    payloads = raw_sse(base_url, key[1], chatbot)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"
    assert not [p for p in payloads[:-1] if "usage" in json.loads(p)]


# --- bad requests ---------------------------------------------------------------------------------------------


def test_it_refuses_malformed_json(base_url, key):
    response = httpx.post(f"{base_url}/chat/completions", content=b'{"model": "x", "messages": [', timeout=30,
                          headers={"Authorization": f"Bearer {key[1]}", "Content-Type": "application/json"})
    error = response.json()["error"]
    assert response.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]
    assert set(error) >= {"message", "type", "param", "code"}


def test_it_refuses_deeply_nested_json_without_a_server_error(base_url, key):
    response = httpx.post(f"{base_url}/chat/completions", content=b"[" * 100_000, timeout=30,
                          headers={"Authorization": f"Bearer {key[1]}", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_it_refuses_a_body_too_large_in_openais_shape(base_url, key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default, as in a deployed runtime
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": "a" * 3_000_000}]}).encode()
    response = httpx.post(f"{base_url}/chat/completions", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {key[1]}", "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]


def test_it_refuses_an_empty_question(api, chatbot, platform):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, chatbot, question="   ")
    assert caught.value.param == "messages"
    assert platform.calls("/chat/completions") == []


def test_it_answers_a_wrong_method_in_openais_shape(base_url, key):
    response = httpx.get(f"{base_url}/chat/completions", headers={"Authorization": f"Bearer {key[1]}"}, timeout=30)
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_it_refuses_tools_by_name(api, chatbot):
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, chatbot, tools=[tool])
    assert caught.value.param == "tools"
    assert caught.value.code == "unsupported_parameter"


def test_it_refuses_more_than_one_choice(api, chatbot):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, chatbot, n=2)
    assert caught.value.param == "n"


def test_it_refuses_stop_sequences(api, chatbot):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, chatbot, stop=["\n"])
    assert caught.value.param == "stop"


def test_it_refuses_an_image_and_names_the_part(api, chatbot):
    content = [{"type": "text", "text": "What is in this picture?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model=chatbot.slug, messages=[{"role": "user", "content": content}])
    assert caught.value.param == "messages[0].content[1]"
    assert "image_url" in caught.value.body["message"]


def test_it_calls_no_llm_for_a_bad_request(api, chatbot, platform):
    with pytest.raises(openai.BadRequestError):
        ask(api, chatbot, n=2)
    assert platform.calls("/chat/completions") == []


# --- keys -----------------------------------------------------------------------------------------------------


def test_it_refuses_a_missing_key(client_for, chatbot):
    client = client_for("unused")
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(client, chatbot, extra_headers={"Authorization": openai.Omit()})
    assert "authorization" not in caught.value.response.request.headers
    assert caught.value.code == "invalid_api_key"


def test_it_refuses_a_wrong_key(client_for, chatbot):
    client = client_for("wzc_abcdefghij_" + "x" * 40)
    with pytest.raises(openai.AuthenticationError):
        ask(client, chatbot)


def test_it_refuses_a_known_prefix_with_a_wrong_secret(client_for, key, chatbot):
    forged = key[1][:-4] + ("AAAA" if not key[1].endswith("AAAA") else "BBBB")
    client = client_for(forged)
    with pytest.raises(openai.AuthenticationError):
        ask(client, chatbot)


def test_it_refuses_a_revoked_key_at_once(api, key, chatbot, platform):
    api.models.list()
    apikey_revoke(chatbot, key[0].id)
    with pytest.raises(openai.AuthenticationError):
        ask(api, chatbot)
    assert platform.calls("/chat/completions") == []


def test_it_never_echoes_the_key(base_url, key, chatbot):
    wrong = key[1] + "-wrong"
    response = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {wrong}"}, timeout=30)
    assert response.status_code == 401
    assert key[1] not in response.text


def test_it_answers_401_to_a_folded_authorization_header(live_server, key):
    # An obsolete line folding puts CR/LF inside the header's value as the server reads it.
    request = (b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               b"Authorization: Bearer " + key[1].encode() + b"\r\n X-Injected: 1\r\n\r\n")
    response = raw_http(live_server, request)
    assert response.startswith(b"HTTP/1.1 401")
    assert key[1].encode() not in response


def test_it_keeps_only_the_prefix_and_a_keyed_hash(chatbot, key):
    row, plaintext = key
    pepper = chatbot_pepper(chatbot.id)
    assert plaintext.startswith(f"wzc_{row.prefix}_")
    assert row.hashed == hmac.new(pepper.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
    assert row.hashed != hashlib.sha256(plaintext.encode()).hexdigest()  # keyed, not a bare digest


def test_it_stores_the_key_nowhere_in_the_platform_database(api, key, chatbot):
    from byoi.models import AuditEvent

    api.models.list()  # a use of the key writes last_used
    secret = key[1].split("_", 2)[2]
    assert AuditEvent.objects.filter(action="chatbot.api_key_created", chatbot_id=chatbot.id).exists()
    assert platform_tables_containing(secret) == []


def test_it_compares_the_hash_in_constant_time(chatbot, key, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert apikey_authenticate(key[1]) == key[0]
    assert compared == [(key[0].hashed, key[0].hashed)]


def test_it_limits_active_keys_to_the_plan(free_user):
    from chatbots.services import chatbot_create
    from wizchat.plans import PlanLimitReached

    bot = chatbot_create(free_user.membership.account, name="Free bot", instructions="")
    first, _ = apikey_create(bot, "one")
    apikey_create(bot, "two")
    with pytest.raises(PlanLimitReached) as caught:
        apikey_create(bot, "three")
    assert str(caught.value) == ("Your Free plan allows 2 active API keys per chatbot. Revoke one or upgrade your "
                                 "plan to create another.")


def test_it_allows_a_new_key_once_one_is_revoked(free_user):
    from chatbots.services import chatbot_create

    bot = chatbot_create(free_user.membership.account, name="Free bot", instructions="")
    first, _ = apikey_create(bot, "one")
    apikey_create(bot, "two")
    apikey_revoke(bot, first.id)
    assert apikey_create(bot, "three")[0].name == "three"


# --- models and accounts --------------------------------------------------------------------------------------


def test_it_lists_exactly_the_keys_chatbot(api, chatbot, owner, outsider):
    from chatbots.services import chatbot_create

    chatbot_create(owner.membership.account, name="Sales bot", instructions="")
    chatbot_create(outsider.membership.account, name="Other bot", instructions="")
    assert [m.id for m in api.models.list().data] == [chatbot.slug]


def test_it_describes_the_keys_chatbot(api, chatbot):
    model = api.models.retrieve(chatbot.slug)
    assert (model.id, model.object) == (chatbot.slug, "model")


def test_it_answers_the_same_404_for_another_accounts_chatbot_and_a_missing_one(api, outsider):
    from chatbots.services import chatbot_create

    other = chatbot_create(outsider.membership.account, name="Other bot", instructions="")
    with pytest.raises(openai.NotFoundError) as elsewhere:
        api.chat.completions.create(model=other.slug, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.NotFoundError) as missing:
        api.chat.completions.create(model="no-such-bot", messages=[{"role": "user", "content": "Hi"}])
    assert elsewhere.value.body["message"].replace(other.slug, "*") == \
        missing.value.body["message"].replace("no-such-bot", "*")
    assert elsewhere.value.code == missing.value.code == "model_not_found"


def test_it_hides_another_accounts_chatbot_from_the_model_lookup(api, outsider):
    from chatbots.services import chatbot_create

    other = chatbot_create(outsider.membership.account, name="Other bot", instructions="")
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve(other.slug)


# --- limits ---------------------------------------------------------------------------------------------------


def test_it_limits_requests_per_minute_with_retry_after(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    api.models.list()
    api.models.list()
    with pytest.raises(openai.RateLimitError) as caught:
        api.models.list()
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60


def test_it_limits_guessing_keys_from_one_address(client_for, chatbot, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    guesser = client_for("wzc_abcdefghij_" + "x" * 40)
    for _ in range(2):
        with pytest.raises(openai.AuthenticationError):
            guesser.models.list()
    with pytest.raises(openai.RateLimitError):
        guesser.models.list()


def test_it_counts_the_rate_limit_per_key(api, client_for, chatbot, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    other = client_for(apikey_create(chatbot, "App")[1])
    api.models.list()
    assert [m.id for m in other.models.list().data] == [chatbot.slug]


def test_it_says_when_the_monthly_quota_is_used_up(api, chatbot, platform):
    plan = chatbot.account.plan
    plan.max_messages_per_month = 1
    plan.save()
    ask(api, chatbot)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(api, chatbot)
    assert caught.value.type == "insufficient_quota"
    assert "messages a month" in caught.value.body["message"]
    assert len(platform.calls("/chat/completions")) == 1


# --- a failing component --------------------------------------------------------------------------------------


@pytest.fixture
def llm_down(chatbot, platform):
    """The customer's own LLM on a port where nothing listens."""
    settings = platform.llm_settings(endpoint=f"http://127.0.0.1:{embedded.free_port()}/v1")
    component_save(chatbot, "llm", values=settings, secrets={"api_key": platform.api_key})
    byoi_set_enabled(chatbot, True)
    return chatbot


def test_it_answers_503_with_the_code_and_hint_when_the_customers_llm_is_down(api, llm_down):
    with pytest.raises(openai.InternalServerError) as caught:
        ask(api, llm_down)
    assert caught.value.status_code == 503
    assert caught.value.code == "refused"
    assert "Connection refused" in caught.value.body["hint"]
    assert "Traceback" not in caught.value.response.text


def test_it_never_falls_back_to_the_default_llm(api, llm_down, platform):
    with pytest.raises(openai.InternalServerError):
        ask(api, llm_down)
    assert platform.calls("/chat/completions") == []


def test_it_answers_503_to_a_stream_that_fails_before_its_first_token(api, llm_down):
    with pytest.raises(openai.APIStatusError) as caught:
        list(ask(api, llm_down, stream=True))
    assert caught.value.status_code == 503
    assert caught.value.code == "refused"


def test_it_answers_502_when_the_customers_llm_rejects_its_key(api, chatbot, platform):
    component_save(chatbot, "llm", values=platform.llm_settings(api_key="sk-wrong"), secrets={"api_key": "sk-wrong"})
    byoi_set_enabled(chatbot, True)
    with pytest.raises(openai.APIStatusError) as caught:
        ask(api, chatbot)
    assert caught.value.status_code == 502
    assert caught.value.code == "auth"
    assert "verify the API key" in caught.value.body["hint"]


def test_it_answers_502_not_503_when_the_plan_no_longer_allows_byoi(api, chatbot, platform):
    from wizchat.models import Plan

    component_save(chatbot, "llm", values=platform.llm_settings(), secrets={"api_key": platform.api_key})
    byoi_set_enabled(chatbot, True)
    account = chatbot.account
    account.plan = Plan.objects.get(slug="free")
    account.save()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(api, chatbot)
    assert caught.value.status_code == 502
    assert "Upgrade" in caught.value.body["hint"]
    assert platform.calls("/chat/completions") == []


# --- conversations --------------------------------------------------------------------------------------------


def test_it_stores_the_exchange_under_a_conversation_id(api, chatbot, platform):
    conversation = str(uuid.uuid4())
    completion = ask(api, chatbot, extra_body={"conversation_id": conversation})
    messages = conversation_history(chatbot, uuid.UUID(conversation).hex)
    assert [(m.role, m.content) for m in messages] == [("user", QUESTION), ("assistant", platform.reply)]
    assert completion.model_extra["wizchat"]["stored"] == "stored"


def test_it_continues_a_stored_conversation(api, chatbot, platform):
    conversation = str(uuid.uuid4())
    ask(api, chatbot, extra_body={"conversation_id": conversation})
    ask(api, chatbot, "And FalkorDB?", extra_body={"conversation_id": conversation})
    sent = platform.calls("/chat/completions")[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", QUESTION), ("assistant", platform.reply), ("user", "And FalkorDB?")]
    assert len(conversation_history(chatbot, uuid.UUID(conversation).hex)) == 4


def test_it_takes_the_conversation_id_from_a_header(api, chatbot, platform):
    conversation = uuid.uuid4()
    list(ask(api, chatbot, stream=True, extra_headers={"X-WizChat-Conversation": str(conversation)}))
    messages = conversation_history(chatbot, conversation.hex)
    assert [m.role for m in messages] == ["user", "assistant"]


def test_it_stores_nothing_without_a_conversation_id(api, chatbot, knowledge):
    completion = ask(api, chatbot)
    assert conversation_list(chatbot) == []
    assert "conversation_id" not in completion.model_extra["wizchat"]


def test_it_refuses_a_conversation_id_that_is_not_a_uuid(api, chatbot):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, chatbot, extra_body={"conversation_id": "my-chat"})
    assert caught.value.param == "conversation_id"


def test_it_sends_the_callers_earlier_turns_to_the_llm(api, chatbot, platform):
    api.chat.completions.create(model=chatbot.slug, messages=[
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": QUESTION}])
    sent = platform.calls("/chat/completions")[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "Hello"), ("assistant", "Hi, how can I help?"), ("user", QUESTION)]


@pytest.mark.slow
def test_it_answers_through_the_openai_client_with_the_real_local_llm(api, chatbot, knowledge, llama_server,
                                                                       settings):
    """The whole path with the real llama.cpp server (SmolLM2-135M) as the default LLM."""
    from byoi.resolver import clear_cache

    settings.DEFAULT_LLM_ENDPOINT = llama_server.base_url
    settings.DEFAULT_LLM_MODEL = llama_server.model
    settings.BYOI_OPERATION_TIMEOUT = 120  # a CPU-only model reading a 1k-token prompt on a busy machine
    clear_cache()
    completion = ask(api, chatbot, max_tokens=48)
    assert completion.choices[0].message.content.strip()
    # llama-cpp-python's server sends no token counts in a stream, even when asked: WizChat estimates and says so.
    assert completion.model_extra["wizchat"]["usage_estimated"] is True
    assert completion.usage.prompt_tokens > 100 and completion.usage.completion_tokens > 0
    assert completion.model_extra["wizchat"]["sources"][0]["title"] == "BYOI guide"
    chunks = list(api.chat.completions.create(model=chatbot.slug, stream=True, max_tokens=24,
                                              messages=[{"role": "user", "content": QUESTION}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    clear_cache()

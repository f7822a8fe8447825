"""The public API in OpenAI's chat-completions shape: one implementation, served by the platform for every
chatbot and by each deployed runtime for its own (the gateway says who the caller is and which chatbots it may
use: chatbots.gateway on the platform, wizchat.runtime.gateway in a runtime).

Request checking, the response and stream shapes, OpenAI's error shape, and rate limits live here; views only
translate HTTP. Extensions ride in fields OpenAI clients ignore: `wizchat` on a response (sources, conversation
id) and on the last stream chunk; a conversation id in `conversation_id` (or the X-WizChat-Conversation header)
stores the exchange through the chatbot's conversations backend — without one the API is stateless."""

from __future__ import annotations

import calendar
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from byoi.errors import TRANSIENT_CODES
from wizchat.textcheck import text_problem

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_MESSAGES = 200
ROLES = {"system", "developer", "user", "assistant"}
# Accepted and honoured (or harmless to ignore, as OpenAI itself treats them for text answers).
ACCEPTED = {"model", "messages", "stream", "stream_options", "temperature", "max_tokens", "max_completion_tokens",
            "top_p", "user", "metadata", "store", "seed", "presence_penalty", "frequency_penalty", "n",
            "response_format", "conversation_id", "parallel_tool_calls", "logprobs", "service_tier"}
# Known OpenAI parameters a chatbot cannot honour: refused by name rather than silently ignored.
UNSUPPORTED = {
    "tools": "tools (function calling) is not supported: a WizChat chatbot answers from its documents.",
    "tool_choice": "tool_choice is not supported: a WizChat chatbot answers from its documents.",
    "functions": "functions is not supported: a WizChat chatbot answers from its documents.",
    "function_call": "function_call is not supported: a WizChat chatbot answers from its documents.",
    "audio": "audio output is not supported; ask for text.",
    "modalities": "only the text modality is supported.",
    "prediction": "predicted outputs are not supported.",
    "logit_bias": "logit_bias is not supported.",
    "top_logprobs": "logprobs are not supported.",
    "web_search_options": "web search is not supported: the chatbot answers from its documents.",
    "stop": "stop sequences are not supported.",
    "reasoning_effort": "reasoning_effort is not supported.",
}


class ApiError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, hint: str = "", retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.hint, self.retry_after = hint, retry_after

    def body(self) -> dict:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        if self.hint:
            error["hint"] = self.hint
        return {"error": error}


def unauthorized(message: str = "Incorrect or missing API key. Send it as 'Authorization: Bearer wzc_…'; "
                                "create one on the chatbot's page under API keys.") -> ApiError:
    return ApiError(401, message, type="invalid_request_error", code="invalid_api_key")


def model_not_found(model: str) -> ApiError:
    # The same answer whether the chatbot exists elsewhere or not: a key learns nothing about other chatbots.
    return ApiError(404, f"The model '{model[:100]}' does not exist or you do not have access to it.",
                    param="model", code="model_not_found")


@dataclass
class CompletionRequest:
    model: str
    question: str
    history: list[dict] = field(default_factory=list)  # earlier turns: [{"role", "content"}]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    conversation_id: str | None = None


def _text_of(content, index: int) -> str:
    text = _content_text(content, index)
    # What a conversation stores must be storable: no control characters (NUL: PostgreSQL refuses it) nor lone
    # surrogates (not UTF-8: the LLM call itself failed, and counted against the chatbot's LLM as if it were down).
    if problem := text_problem(text, f"messages[{index}].content", multiline=True):
        raise ApiError(400, problem, param=f"messages[{index}].content", code="invalid_characters")
    return text


def _content_text(content, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(400, f"messages[{index}].content[{j}] is of type '{kind}': only text parts are "
                                    "supported (no images, audio or files).",
                               param=f"messages[{index}].content[{j}]", code="unsupported_content")
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise ApiError(400, f"messages[{index}].content must be a string or a list of text parts.",
                   param=f"messages[{index}].content")


def _number(body: dict, name: str, low: float, high: float, integer: bool = False):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ApiError(400, f"{name} must be {kind}.", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low:g} and {high:g}.", param=name)
    return value


def completion_request(raw: bytes, header_conversation: str | None = None) -> CompletionRequest:
    """The checked request, or ApiError(400) naming what is wrong."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES // 1024} KB.")
    try:
        body = json.loads(raw or b"")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise ApiError(400, "We could not parse the JSON body of your request. Send a JSON object with 'model' "
                            "and 'messages'.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object with 'model' and 'messages'.")
    for name in body:
        if name in UNSUPPORTED:
            raise ApiError(400, UNSUPPORTED[name], param=name, code="unsupported_parameter")
        if name not in ACCEPTED:
            raise ApiError(400, f"Unrecognized request argument supplied: {str(name)[:60]}", param=str(name)[:60],
                           code="unknown_parameter")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "n must be 1: a chatbot gives one answer per request.", param="n",
                       code="unsupported_parameter")
    if body.get("logprobs") not in (None, False):
        raise ApiError(400, "logprobs are not supported.", param="logprobs", code="unsupported_parameter")
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise ApiError(400, "response_format must be {\"type\": \"text\"}: structured output is not supported.",
                       param="response_format", code="unsupported_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model is required: the chatbot's slug (GET /v1/models lists them).", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages is required: a non-empty list of {\"role\", \"content\"}.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise ApiError(400, f"Send at most {MAX_MESSAGES} messages.", param="messages")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiError(400, f"messages[{i}] must be an object with role and content.", param=f"messages[{i}]")
        role = message.get("role")
        if role == "tool" or "tool_calls" in message:
            raise ApiError(400, f"messages[{i}] is a tool message: tools are not supported.",
                           param=f"messages[{i}]", code="unsupported_parameter")
        if role not in ROLES:
            raise ApiError(400, f"messages[{i}].role must be one of: system, developer, user, assistant.",
                           param=f"messages[{i}].role")
        turns.append({"role": role, "content": _text_of(message.get("content"), i)})
    if turns[-1]["role"] != "user":
        raise ApiError(400, "The last message must be the user's question.", param="messages")
    question = turns[-1]["content"]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false.", param="stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise ApiError(400, "stream_options is only allowed with stream: true, as an object.",
                       param="stream_options")
    include_usage = bool((options or {}).get("include_usage", False))
    max_tokens = _number(body, "max_completion_tokens", 1, 4096, True) or _number(body, "max_tokens", 1, 4096, True)
    temperature = _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    conversation = body.get("conversation_id", header_conversation)
    if conversation is not None:
        try:
            conversation = uuid.UUID(str(conversation)).hex
        except ValueError:
            raise ApiError(400, "conversation_id must be a UUID; start a conversation with any new UUID and send "
                                "the same one with each turn.", param="conversation_id") from None
    # Earlier turns go to the prompt as history; system/developer messages from the caller are context, not
    # instructions that override the chatbot's own (they are passed as user-visible turns).
    history = [t if t["role"] in ("user", "assistant") else {"role": "user", "content": t["content"]}
               for t in turns[:-1]]
    return CompletionRequest(model=model.strip(), question=question, history=history, stream=stream,
                             include_usage=include_usage, max_tokens=max_tokens, temperature=temperature,
                             conversation_id=conversation)


# --- responses ------------------------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(cid: str, model: str, created: int, answer: str, usage: dict, extension: dict) -> dict:
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": usage, "system_fingerprint": None, "wizchat": extension,
    }


def chunk_body(cid: str, model: str, created: int, delta: dict, finish: str | None = None,
               **extra) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def component_error(event: dict) -> ApiError:
    """A failing component (a chat error event): 503 when it may come back by itself, 502 when it answered
    wrongly; the taxonomy's code and hint, never a traceback, never WizChat's defaults instead."""
    code = event.get("code") or "unavailable"
    # As ComponentFailed.transient: a BYOI setting or plan problem (kind "byoi") does not go away by waiting.
    transient = code in TRANSIENT_CODES and event.get("kind") != "byoi"
    if code == "rejected":
        return ApiError(400, event.get("message", "The question was rejected."), param="messages")
    if code == "quota":  # the month's messages are used up: until the next month (UTC) starts
        return ApiError(429, event.get("message", ""), type="insufficient_quota", code="insufficient_quota",
                        retry_after=seconds_to_next_month())
    if code == "internal":  # WizChat's own fault, not a component's
        return ApiError(500, event.get("message") or "Internal error.", type="server_error", code=code,
                        hint=event.get("hint", ""))
    return ApiError(503 if transient else 502, event.get("message") or "A component failed.",
                    type="server_error" if transient else "upstream_error", code=code, hint=event.get("hint", ""))


def seconds_to_next_month(now: float | None = None) -> int:
    """Seconds until the first day of next month, UTC (when the monthly message quota starts again)."""
    now = time.time() if now is None else now
    today = time.gmtime(now)
    year, month = (today.tm_year + 1, 1) if today.tm_mon == 12 else (today.tm_year, today.tm_mon + 1)
    return max(1, math.ceil(calendar.timegm((year, month, 1, 0, 0, 0)) - now))


def models_body(targets: list) -> dict:
    return {"object": "list", "data": [{"id": t.slug, "object": "model", "created": t.created,
                                        "owned_by": t.owner} for t in targets]}


# --- rate limits ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _limiter():
    from limits import storage, strategies

    url = settings.RATE_LIMIT_STORAGE_URL or _broker_db(2)
    if url.startswith("redis"):
        # limits checks its driver's version by reading `sys.modules["redis"].__version__`, without importing it
        # when the name is there already — as it is, half-initialised, while another thread of a fresh worker is
        # still importing it: it reads 0.0.0 and refuses. An import statement waits for that import to finish.
        import redis  # noqa: F401
    return strategies.MovingWindowRateLimiter(storage.storage_from_string(url))


def rate_limit_prepare() -> bool:
    """Build the counter store's client and open its first connection ahead of the first request (a new web
    worker calls this as it starts): otherwise that work — importing redis and limits, connecting — falls on
    the worker's first requests, all at once. True when the store answered."""
    try:
        return bool(_limiter().storage.check())
    except Exception as error:  # noqa: BLE001 - said; the requests then count or skip as rate_limit decides
        log.warning("The rate-limit counter store cannot be used (%s; see RATE_LIMIT_STORAGE_URL)",
                    type(error).__name__)
        return False


def _broker_db(db: int) -> str:
    """The Redis WizChat already runs (the Celery broker), another database number."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(getattr(settings, "CELERY_BROKER_URL", "") or "memory://")
    if parts.scheme not in ("redis", "rediss"):
        return "memory://"
    return urlunsplit(parts._replace(path=f"/{db}"))


def rate_limit(scope: str, key: str, per_minute: int) -> None:
    """Count one request for `scope:key`; ApiError(429) with Retry-After when the minute's allowance is used."""
    from limits import RateLimitItemPerMinute

    if per_minute <= 0:
        return
    item = RateLimitItemPerMinute(per_minute)
    try:
        limiter = _limiter()
    except Exception as error:  # noqa: BLE001 - nor one that cannot be built (a configuration problem: said)
        log.warning("The rate-limit counter store cannot be used (%s; see RATE_LIMIT_STORAGE_URL); request not "
                    "counted", type(error).__name__)  # not the message: it may quote the URL and its password
        return
    try:
        allowed = limiter.hit(item, "wizchat", scope, key)
    except Exception:  # noqa: BLE001 - a broken counter store must not take the API down with it
        return
    if not allowed:
        reset = limiter.get_window_stats(item, "wizchat", scope, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(429, f"Rate limit reached: {per_minute} requests a minute per {scope}. "
                            f"Try again in {wait} s.", type="rate_limit_exceeded", code="rate_limit_exceeded",
                       retry_after=wait)


def client_address(request) -> str:
    """The caller's address: REMOTE_ADDR, or the entry TRUSTED_PROXY_COUNT hops back in X-Forwarded-For."""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")


@lru_cache(maxsize=1)
def gateway():
    return import_string(settings.PUBLIC_API_GATEWAY)()


def stream_events(request: CompletionRequest, cid: str, created: int, events) -> Iterator[bytes]:
    """Chat events → OpenAI stream chunks. The view has already read up to the first token (so that a component
    failing before the answer starts gets its HTTP status); a failure after it cannot change the status any
    more: it ends the stream with an error object in OpenAI's shape, then [DONE]."""
    model = request.model
    extension: dict = {}
    usage: dict = {}
    yield sse(chunk_body(cid, model, created, {"role": "assistant", "content": ""}))
    for event in events:
        kind = event["event"]
        if kind == "meta":
            extension["conversation_id"] = event.get("conversation_id") if request.conversation_id else None
        elif kind == "token":
            yield sse(chunk_body(cid, model, created, {"content": event["text"]}))
        elif kind == "sources":
            extension["sources"] = event["sources"]
        elif kind == "error":
            yield sse(component_error(event).body())
            yield sse("[DONE]")
            return
        elif kind == "done":
            usage = event.get("usage") or {}
            if request.conversation_id:
                extension["stored"] = event.get("stored")
    extension["usage_estimated"] = bool(usage.pop("estimated", True))
    yield sse(chunk_body(cid, model, created, {}, "stop", wizchat=extension))
    if request.include_usage:
        last = chunk_body(cid, model, created, {}, None, usage=usage)
        last["choices"] = []
        yield sse(last)
    yield sse("[DONE]")


# --- who is calling ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A chatbot a caller may talk to, and how (the chat host of where it runs)."""

    slug: str
    chatbot: object
    host: object
    created: int = 0
    owner: str = "wizchat"


@dataclass
class Caller:
    """Who authenticated: an API key (kind "key") or a widget session (kind "widget"), and what it covers."""

    kind: str
    ident: str  # the key's prefix or the widget session's id: what rate limits count against
    targets: list[Target]
    per_minute: int = 60

    def target(self, model: str) -> Target:
        for target in self.targets:
            if target.slug == model:
                return target
        raise model_not_found(model)


class Gateway:
    """Where the API runs: the platform (every chatbot, keys in its database) or one deployed runtime."""

    def authenticate(self, token: str, request) -> Caller | None:
        raise NotImplementedError

    def widget_chatbot(self, chatbot_id):
        """(chatbot, allowed origins, signing key) for the widget, or None when not served here."""
        raise NotImplementedError


def bearer(request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    token = token.strip()
    # A key with CR/LF or other control characters is no key (and is never echoed back).
    if not token or any(ord(c) < 33 or ord(c) > 126 for c in token):
        return ""
    return token

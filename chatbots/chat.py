"""Answering a question: embed it → k nearest chunks from the vector store → the graph neighbourhood of the
entities they mention → a prompt with the chatbot's instructions → the LLM's answer, streamed.

`chat_events()` yields plain events (dicts) that the view turns into server-sent events or a full page:
  {"event": "meta", "conversation_id"}, {"event": "token", "text"}, {"event": "sources", "sources": [...]},
  {"event": "error", "message", "hint", "component", "code"}, {"event": "done", "stored"}.
A failing component ends the stream with an error event naming it and its fix hint; nothing falls back to
WizChat's defaults (the stack comes from byoi.resolve, which never does that either)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from django.db import connection

from byoi.access import ComponentFailed, component, component_key, failure_record, resolve_stack
from byoi.activity import component_success_record
from byoi.backends.embeddings import LocalEmbeddings
from byoi.isolation import Lanes
from wizchat.plans import PlanLimitReached

from . import extraction
from .models import Chatbot, Document

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
TOP_K = 4
CONTEXT_CHARS = 3200  # small default models have a 2k-token window
MAX_FACTS = 15
HISTORY_TURNS = 4
ANSWER_TOKENS = 320
SNIPPET_CHARS = 220


class QuestionRejected(Exception):
    """The question itself is unusable; the message says what to fix."""


@dataclass
class Prepared:
    stack: object
    messages: list[dict]
    sources: list[dict] = field(default_factory=list)
    facts: list = field(default_factory=list)


def question_clean(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise QuestionRejected("Type a question first.")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionRejected(f"The question is too long ({len(question):,} characters); keep it under "
                               f"{MAX_QUESTION_CHARS:,}.")
    return question


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


TITLES_INLINE = 100  # up to this many documents, their titles come with the first query


@dataclass
class Knowledge:
    """What the platform knows about the chatbot's documents (no content): whether anything is indexed, and the
    documents' titles when there are few (None: look up the titles of the hits)."""

    has_chunks: bool = False
    has_graph: bool = False
    queued: bool | None = None  # whether the chatbot has messages in the outbox; None: not asked
    titles: dict | None = None


# Constant SQL: compiling these subqueries with the ORM took about a millisecond of CPU on every question, while
# the question's embedding (started just before, on another thread) waited for the interpreter.
_KNOWLEDGE_SQL = """
SELECT EXISTS (SELECT 1 FROM chatbots_document WHERE chatbot_id = %(c)s AND chunks_embedded > 0),
       EXISTS (SELECT 1 FROM chatbots_document WHERE chatbot_id = %(c)s AND chunks_graphed > 0),
       CASE WHEN %(outbox)s THEN EXISTS (SELECT 1 FROM conversations_outbox WHERE chatbot_id = %(c)s) END,
       (SELECT jsonb_agg(jsonb_build_array(d.id, d.title))
          FROM (SELECT id, title FROM chatbots_document WHERE chatbot_id = %(c)s LIMIT %(n)s) d)::text
"""


def knowledge_of(chatbot: Chatbot, with_outbox: bool = False) -> Knowledge:
    """One query, whatever the number of documents: EXISTS tests, plus the titles of at most TITLES_INLINE
    documents (so a typical chatbot needs no second query for its sources). `with_outbox`: also learn whether
    messages wait in the outbox."""
    with connection.cursor() as cursor:
        cursor.execute(_KNOWLEDGE_SQL, {"c": chatbot.id, "outbox": with_outbox, "n": TITLES_INLINE + 1})
        has_chunks, has_graph, queued, titles = cursor.fetchone()
    pairs = json.loads(titles) if titles else []
    return Knowledge(has_chunks=has_chunks, has_graph=has_graph, queued=queued,
                     titles=dict(pairs) if len(pairs) <= TITLES_INLINE else None)


def titles_of(chatbot: Chatbot, hits: list, known: Knowledge | None = None) -> dict:
    """The current titles of the hits' documents (a document may have been renamed since its chunks were
    stored), by document id: from `known` when it has them all, else one query for the hits' documents only.
    Ids a customer's store returns that are not ours are left out."""
    if known is not None and known.titles is not None:
        return known.titles
    ids = {hit.document_id for hit in hits if _is_uuid(hit.document_id)}
    if not ids:
        return {}
    rows = Document.objects.filter(chatbot_id=chatbot.id, id__in=ids).values_list("id", "title")
    return {str(doc_id): title for doc_id, title in rows}


class ChatHost:
    """What the chat pipeline needs from the place it runs in. The platform (PlatformHost) reads the chatbot's
    rows, counts the plan's quota and queues undeliverable messages in its outbox; a deployed runtime
    (wizchat.runtime.host) has no platform database and answers these from its environment and its stores."""

    def stack(self, chatbot):
        raise NotImplementedError

    def knowledge(self, chatbot, with_outbox: bool = False) -> Knowledge:
        raise NotImplementedError

    def titles(self, chatbot, hits: list, known: Knowledge | None) -> dict:
        return known.titles if known is not None and known.titles is not None else {}

    def quota_use(self, chatbot) -> None:
        """Count one question; PlanLimitReached when the plan's monthly allowance is used up."""

    def failure_record(self, chatbot, failure: ComponentFailed, during: str) -> None:
        """Note a failure of one of the customer's components where the customer will see it."""

    def success_record(self, chatbot, stack, kinds: list[str], during: str) -> None:
        """Note that these components just worked (a component shown failing turns green again)."""

    def store_begin(self, chatbot, first, stack, queued: bool | None):
        """Start storing the question while the answer is prepared (None: stored at the end instead)."""
        return None

    def store_end(self, chatbot, pending, first, *rest, stack) -> str:
        """Store the exchange in order: "stored", "duplicate" or "queued" (kept until the database is back)."""
        raise NotImplementedError

    def history(self, chatbot, conversation_id: str, stack, limit: int) -> list:
        raise NotImplementedError


class PlatformHost(ChatHost):
    def stack(self, chatbot):
        return resolve_stack(chatbot)

    def knowledge(self, chatbot, with_outbox: bool = False) -> Knowledge:
        return knowledge_of(chatbot, with_outbox)

    def titles(self, chatbot, hits: list, known: Knowledge | None) -> dict:
        return titles_of(chatbot, hits, known)

    def quota_use(self, chatbot) -> None:
        from conversations.services import message_quota_use

        message_quota_use(chatbot.account)

    def failure_record(self, chatbot, failure: ComponentFailed, during: str) -> None:
        failure_record(chatbot, failure, during)

    def success_record(self, chatbot, stack, kinds: list[str], during: str) -> None:
        try:
            component_success_record(chatbot, stack, kinds, during)
        except Exception:  # noqa: BLE001 - noting a recovery must never break an answer
            log.exception("Could not note the recovery of chatbot %s", chatbot.id)

    def store_begin(self, chatbot, first, stack, queued: bool | None):
        from conversations.services import conversation_append_start

        return conversation_append_start(chatbot, first, stack, queued)

    def store_end(self, chatbot, pending, first, *rest, stack) -> str:
        from conversations.services import conversation_append_finish

        return conversation_append_finish(chatbot, pending, first, *rest, stack=stack)

    def history(self, chatbot, conversation_id: str, stack, limit: int) -> list:
        from conversations.services import conversation_history

        return conversation_history(chatbot, conversation_id, stack=stack, limit=limit)


PLATFORM = PlatformHost()


def tokens_estimate(text: str) -> int:
    """Tokens of `text` as OpenAI's tokenizers count English on average (4 characters a token)."""
    return -(-len(text) // 4) if text else 0


def usage_of(messages: list[dict], answer: str, reported: dict | None) -> dict:
    """Token counts of one exchange: the LLM's own when it reported them, else an estimate (`estimated`)."""
    if reported and reported.get("prompt_tokens") is not None:
        prompt, completion, estimated = (int(reported["prompt_tokens"]),
                                         int(reported.get("completion_tokens") or 0), False)
    else:
        prompt = tokens_estimate("".join(str(m.get("content") or "") for m in messages))
        completion, estimated = tokens_estimate(answer), True
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "estimated": estimated}


def _embed_question(stack, question: str) -> list[float]:
    with component(stack, "embeddings") as embedder:
        return embedder.embed([question])[0]


# Embedding the question runs beside the platform queries that precede retrieval (ONNX and HTTP release the GIL).
# A customer's embeddings endpoint may hold EMBEDDER_THREADS_PER_COMPONENT of the shared threads; when its share
# (or the pool) is busy the question is embedded in the request's own thread instead of waiting for one.
EMBEDDER_THREADS = 4
EMBEDDER_THREADS_PER_COMPONENT = 2
_EMBEDDER_LANES = Lanes("wizchat-embed", EMBEDDER_THREADS)


def _embed_start(stack, question: str) -> Future | None:
    custom = stack.sources.get("embeddings") == "custom"
    return _EMBEDDER_LANES.submit(component_key(stack, "embeddings"),
                                  EMBEDDER_THREADS_PER_COMPONENT if custom else EMBEDDER_THREADS, _embed_question,
                                  stack, question)


def _in_process(stack) -> bool:
    """Whether the stack's embedder is WizChat's in-process MiniLM (no request leaves the machine)."""
    if stack.sources.get("embeddings") != "default":
        return False
    try:
        return isinstance(stack.embeddings, LocalEmbeddings)
    except Exception:  # noqa: BLE001 - a failing embedder is reported where it is used
        return False


def retrieve(chatbot: Chatbot, stack, question: str, known: Knowledge | None = None,
             vector: Future | None = None, host: ChatHost = PLATFORM) -> tuple[list, list, dict]:
    """(hits, facts, titles) for the question: nearest chunks, graph facts about the entities involved, and
    the current titles of the hits' documents. `vector` may be the question's embedding already under way."""
    known = known or host.knowledge(chatbot)
    if not known.has_chunks:
        return [], [], {}
    query = vector.result() if vector is not None else _embed_question(stack, question)
    with component(stack, "vector_store") as store:
        hits = store.search(chatbot.id, query, k=TOP_K)
    facts = []
    if known.has_graph:
        names = extraction.mentioned_entities(question)
        for hit in hits:
            for name in extraction.mentioned_entities(hit.text):
                if name not in names:
                    names.append(name)
        if names:
            with component(stack, "graph") as graph:
                facts = graph.neighbourhood(chatbot.id, names[:20], limit=MAX_FACTS)
    return hits, facts, host.titles(chatbot, hits, known)


def _title(hit, titles: dict) -> str:
    """The document's current title (it may have been renamed since the chunk was stored)."""
    return titles.get(hit.document_id) or hit.metadata.get("title") or "document"


def prompt_build(chatbot: Chatbot, question: str, hits: list, facts: list, history: list | None = None,
                 titles: dict | None = None) -> list[dict]:
    titles = titles or {}
    parts = [f"You are {chatbot.name}, an assistant that answers from the documents below."]
    if chatbot.instructions.strip():
        parts.append(f"Instructions: {chatbot.instructions.strip()}")
    parts.append("Answer the question using the context. If the context does not contain the answer, say that "
                 "you do not know. Be concise. Cite sources by their number, like [1].")
    budget = CONTEXT_CHARS
    context = []
    for i, hit in enumerate(hits, 1):
        title = _title(hit, titles)
        text = hit.text[:max(0, budget)]
        if not text:
            break
        budget -= len(text)
        context.append(f"[{i}] ({title}) {text}")
    if context:
        parts.append("Context:\n" + "\n\n".join(context))
    if facts:
        lines = [f"- {f.source} {f.relation.replace('_', ' ').lower()} {f.target}" for f in facts[:MAX_FACTS]]
        parts.append("Related facts from the knowledge graph:\n" + "\n".join(lines))
    messages = [{"role": "system", "content": "\n\n".join(parts)}]
    for message in (history or [])[-2 * HISTORY_TURNS:]:
        if isinstance(message, dict):  # turns sent with a public API request
            messages.append({"role": message["role"], "content": message["content"]})
        else:
            messages.append({"role": message.role, "content": message.content})
    messages.append({"role": "user", "content": question})
    return messages


def sources_of(hits: list, titles: dict) -> list[dict]:
    out = []
    for i, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
        out.append({"n": i, "document_id": hit.document_id, "chunk_id": hit.chunk_id,
                    "title": _title(hit, titles),
                    "snippet": snippet})
    return out


def chat_prepare(chatbot: Chatbot, question: str, conversation_id: str | None = None, stack=None,
                 known: Knowledge | None = None, vector: Future | None = None, asked_id: str = "",
                 host: ChatHost = PLATFORM, history: list | None = None) -> Prepared:
    """`asked_id`: the id of the question being stored meanwhile, which the history must not repeat.
    `history`: earlier turns the caller sent itself (public API); a stored conversation's take precedence."""
    stack = stack or host.stack(chatbot)
    hits, facts, titles = retrieve(chatbot, stack, question, known, vector, host)
    history = list(history or [])
    if conversation_id:
        try:
            history = [m for m in host.history(chatbot, conversation_id, stack, 2 * HISTORY_TURNS + 1)
                       if m.id != asked_id] or history
        except ComponentFailed as failure:
            # Earlier turns only add context; the answer can go ahead (the message is still stored or queued).
            log.warning("History of chatbot %s unavailable (%s)", chatbot.id, failure.code)
    messages = prompt_build(chatbot, question, hits, facts, history, titles)
    return Prepared(stack=stack, messages=messages, sources=sources_of(hits, titles), facts=facts)


def _error_event(error: Exception) -> dict:
    if isinstance(error, ComponentFailed):
        return {"event": "error", **error.as_dict()}
    if isinstance(error, PlanLimitReached):
        return {"event": "error", "message": str(error), "hint": "", "component": "", "code": "quota"}
    return {"event": "error", "message": str(error), "hint": "", "component": "", "code": "rejected"}


def chat_events(chatbot: Chatbot, question: str, conversation_id: str | None = None,
                count_quota: bool = True, *, host: ChatHost = PLATFORM, history: list | None = None,
                store: bool = True, max_tokens: int | None = None, temperature: float | None = None
                ) -> Iterator[dict]:
    """The whole exchange as events. Stores the question and the answer through the conversations backend
    (or its outbox) at the end, whatever happened in between — unless `store` is off (the public API without
    a conversation id is stateless, like OpenAI's)."""
    from conversations.services import message_new

    try:
        question = question_clean(question)
    except QuestionRejected as error:
        yield _error_event(error)
        return
    continuing = bool(conversation_id) and _is_uuid(conversation_id)
    if not continuing:
        conversation_id = uuid.uuid4().hex
    try:
        stack = host.stack(chatbot)
        # The in-process embedder starts before the documents query (it is the critical path); it costs only
        # CPU when the chatbot turns out to have no chunks. An embeddings API is called only when needed.
        vector = _embed_start(stack, question) if _in_process(stack) else None
        known = host.knowledge(chatbot, with_outbox=store)
        if not known.has_chunks:
            vector = None
        elif vector is None:
            vector = _embed_start(stack, question)
        if count_quota:
            host.quota_use(chatbot)
    except (PlanLimitReached, ComponentFailed) as error:
        if isinstance(error, ComponentFailed):
            host.failure_record(chatbot, error, "answering")
        yield _error_event(error)
        return
    yield {"event": "meta", "conversation_id": conversation_id}
    asked = message_new(conversation_id, "user", question)
    pending = host.store_begin(chatbot, asked, stack, known.queued) if store else None
    answer: list[str] = []
    sources: list[dict] = []
    failed = None
    usage: dict = {}
    reported: dict = {}
    try:
        prepared = chat_prepare(chatbot, question, conversation_id if continuing else None, stack=stack,
                                known=known, vector=vector, asked_id=asked.id, host=host, history=history)
        sources = prepared.sources
        options = {"max_tokens": min(max_tokens or ANSWER_TOKENS, ANSWER_TOKENS * 4)}
        if temperature is not None:
            options["temperature"] = temperature
        with component(stack, "llm") as llm:
            for delta in llm.stream(prepared.messages, usage=reported, **options):
                answer.append(delta)
                yield {"event": "token", "text": delta}
        usage = usage_of(prepared.messages, "".join(answer), reported)
        host.success_record(chatbot, stack, ["llm", "embeddings", "vector_store"] if known.has_chunks else ["llm"],
                            "answering")
        yield {"event": "sources", "sources": sources}
    except ComponentFailed as error:
        failed = error
        host.failure_record(chatbot, error, "answering")
        yield _error_event(error)
    except Exception:
        # A bug on WizChat's side, not a component: say so instead of breaking the stream with a 500.
        log.exception("Chat of chatbot %s failed", chatbot.id)
        yield {"event": "error", "message": "WizChat could not finish this answer because of an internal error.",
               "hint": "Try again; if it keeps happening, contact support.", "component": "", "code": "internal"}
    finally:
        stored = None
        if store:
            replies = []
            if answer:
                meta = {"sources": [{k: s[k] for k in ("n", "title", "snippet", "document_id")} for s in sources]}
                if failed:
                    meta["error"] = failed.code
                replies.append(message_new(conversation_id, "assistant", "".join(answer), meta))
            stored = host.store_end(chatbot, pending, asked, *replies, stack=stack)
    yield {"event": "done", "stored": stored, "conversation_id": conversation_id, "usage": usage}


def chat_answer(chatbot: Chatbot, question: str, conversation_id: str | None = None, **kw) -> dict:
    """The events collected: {"answer", "sources", "error", "conversation_id", "stored"} (for the no-JS path)."""
    result = {"answer": "", "sources": [], "error": None, "conversation_id": conversation_id, "stored": None}
    for event in chat_events(chatbot, question, conversation_id, **kw):
        kind = event["event"]
        if kind == "token":
            result["answer"] += event["text"]
        elif kind == "sources":
            result["sources"] = event["sources"]
        elif kind == "error":
            result["error"] = event
        elif kind in ("meta", "done"):
            result["conversation_id"] = event["conversation_id"]
            result["stored"] = event.get("stored", result["stored"])
    return result

"""The per-kind contracts. Each kind's module in this package implements one; the default and the
customer's component use the same class wherever the protocol is the same — only the settings differ.

Every backend is built from a plain settings dict (the registry's field names, secrets included) and
raises `BackendError` (taxonomy in byoi/errors.py) for every failure a caller can act on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from byoi.errors import HINTS, BackendError  # noqa: F401 - re-exported for backends

__all__ = ["BackendError", "HINTS", "Chunk", "Hit", "Entity", "Relation", "Fact", "Message", "GraphChunk",
           "LLM", "Embeddings", "VectorStore", "Graph", "ConversationStore"]


@dataclass
class Chunk:
    id: str  # stable: f"{document_id}:{ordinal}"
    document_id: str
    ordinal: int
    text: str
    embedding: list[float]
    metadata: dict = field(default_factory=dict)  # title, source…


@dataclass
class Hit:
    chunk_id: str
    document_id: str
    text: str
    score: float  # cosine distance, lower is closer
    metadata: dict = field(default_factory=dict)


@dataclass
class Entity:
    name: str
    label: str = "Entity"


@dataclass
class Relation:
    source: str
    target: str
    type: str = "RELATED_TO"


@dataclass
class Fact:
    source: str
    relation: str
    target: str
    chunk_ids: list[str] = field(default_factory=list)


@dataclass
class GraphChunk:
    """What the graph holds for one chunk: the entities it mentions and the relations it stated."""

    chunk_id: str
    document_id: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


@dataclass
class Message:
    id: str  # idempotency key: appending the same id twice stores it once
    conversation_id: str
    role: str  # user | assistant
    content: str
    created: str  # ISO 8601
    metadata: dict = field(default_factory=dict)


class Backend:
    def __init__(self, settings: dict, *, connect_timeout: float | None = None,
                 operation_timeout: float | None = None):
        from django.conf import settings as dj

        self.settings = settings
        self.connect_timeout = connect_timeout or dj.BYOI_CONNECT_TIMEOUT
        self.operation_timeout = operation_timeout or dj.BYOI_OPERATION_TIMEOUT

    def __repr__(self) -> str:  # never the settings: they hold secrets
        return f"<{type(self).__name__}>"

    def close(self) -> None:
        """Release pools and clients (called when the component's settings change)."""


class LLM(Backend):
    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.2) -> str:
        raise NotImplementedError

    def stream(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.2,
               usage: dict | None = None) -> Iterator[str]:
        """Yield the answer's text as it arrives; fill `usage` with the server's token counts if it reports them."""
        raise NotImplementedError


class Embeddings(Backend):
    dimensions: int

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError


class VectorStore(Backend):
    def drop(self, chatbot_id: uuid.UUID) -> None:
        """Drop the chatbot's data: only for WizChat's own default store when a chatbot is deleted.
        A customer's database is never dropped automatically."""
        raise NotImplementedError

    def provision(self, chatbot_id: uuid.UUID, dimensions: int) -> None:
        """Create the chatbot's table and index if missing (idempotent, advisory-locked, schema-versioned)."""
        raise NotImplementedError

    def upsert(self, chatbot_id: uuid.UUID, chunks: list[Chunk]) -> None:
        raise NotImplementedError

    def delete_document(self, chatbot_id: uuid.UUID, document_id: str) -> int:
        raise NotImplementedError

    def search(self, chatbot_id: uuid.UUID, embedding: list[float], k: int = 5) -> list[Hit]:
        raise NotImplementedError

    def count(self, chatbot_id: uuid.UUID) -> int:
        raise NotImplementedError

    # --- reading everything back (operators' migrations) ---------------------------------------------------
    def iter_chunks(self, chatbot_id: uuid.UUID, batch_size: int = 500,
                    after_id: str | None = None) -> Iterator[list[Chunk]]:
        """Every chunk (embedding included) in id order, in batches, starting after `after_id`."""
        raise NotImplementedError

    def ids_present(self, chatbot_id: uuid.UUID, ids: list[str]) -> set[str]:
        """Which of these chunk ids the store holds (empty when the chatbot has no table yet)."""
        raise NotImplementedError

    def dimensions(self, chatbot_id: uuid.UUID) -> int | None:
        """The dimensions of the chatbot's stored vectors, None when it has no table yet."""
        raise NotImplementedError


class Graph(Backend):
    def drop(self, chatbot_id: uuid.UUID) -> None:
        """Drop the chatbot's data: only for WizChat's own default store when a chatbot is deleted.
        A customer's database is never dropped automatically."""
        raise NotImplementedError

    def provision(self, chatbot_id: uuid.UUID) -> None:
        raise NotImplementedError

    def upsert(self, chatbot_id: uuid.UUID, document_id: str, chunk_id: str, entities: list[Entity],
               relations: list[Relation]) -> None:
        raise NotImplementedError

    def upsert_many(self, chatbot_id: uuid.UUID, chunks: list[GraphChunk]) -> None:
        """Write a group of chunks' entities and relations, with what `upsert` would give chunk by chunk in
        order (idempotent: writing them again adds nothing). A backend that can should do it in few round trips,
        each of bounded size."""
        for chunk in chunks:
            self.upsert(chatbot_id, chunk.document_id, chunk.chunk_id, chunk.entities, chunk.relations)

    def delete_document(self, chatbot_id: uuid.UUID, document_id: str) -> None:
        raise NotImplementedError

    def neighbourhood(self, chatbot_id: uuid.UUID, entity_names: list[str], limit: int = 20) -> list[Fact]:
        raise NotImplementedError

    def count(self, chatbot_id: uuid.UUID) -> dict:
        """{"nodes": n, "relationships": m} for the chatbot's graph."""
        raise NotImplementedError

    def iter_chunks(self, chatbot_id: uuid.UUID, batch_size: int = 500,
                    after_id: str | None = None) -> Iterator[list[GraphChunk]]:
        """Every chunk node with its entities and relations, in chunk id order, in batches."""
        raise NotImplementedError

    def ids_present(self, chatbot_id: uuid.UUID, ids: list[str]) -> set[str]:
        """Which of these chunk ids have a chunk node in the graph."""
        raise NotImplementedError


class ConversationStore(Backend):
    def drop(self, chatbot_id: uuid.UUID) -> None:
        """Drop the chatbot's data: only for WizChat's own default store when a chatbot is deleted.
        A customer's database is never dropped automatically."""
        raise NotImplementedError

    def provision(self, chatbot_id: uuid.UUID) -> None:
        raise NotImplementedError

    def append(self, chatbot_id: uuid.UUID, message: Message) -> bool:
        """Store the message; False if a message with this id was already stored."""
        raise NotImplementedError

    def conversations(self, chatbot_id: uuid.UUID, limit: int = 50) -> list[dict]:
        """[{id, started, last, messages}] newest first."""
        raise NotImplementedError

    def history(self, chatbot_id: uuid.UUID, conversation_id: str, limit: int = 100) -> list[Message]:
        raise NotImplementedError

    def count(self, chatbot_id: uuid.UUID) -> int:
        raise NotImplementedError

    def iter_messages(self, chatbot_id: uuid.UUID, batch_size: int = 500,
                      after_id: str | None = None) -> Iterator[list[Message]]:
        """Every message in id order, in batches, starting after `after_id`."""
        raise NotImplementedError

    def ids_present(self, chatbot_id: uuid.UUID, ids: list[str]) -> set[str]:
        """Which of these message ids the store holds."""
        raise NotImplementedError

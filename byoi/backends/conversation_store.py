"""PgConversationStore: a chatbot's chat history in PostgreSQL (the platform's database or the customer's).

One table per chatbot, `wizchat_messages_<uuid hex>`, created on first use under an advisory lock and
recorded in `wizchat_schema_version`. A message's id is its idempotency key: a retried delivery (the
outbox) stores it once. Nothing is dropped automatically."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb

from byoi.backends import pg
from byoi.backends.base import BackendError, ConversationStore, Message
from byoi.fingerprint import fingerprint

SCHEMA_VERSION = 1

_PROVISIONED: set[tuple[str, str]] = set()  # (settings fingerprint, table) known to exist


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else ""


def _created(value: str) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise BackendError("config", f"The message time {value[:40]!r} is not an ISO 8601 timestamp.") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _message(row) -> Message:
    """A Message from a row of (id, conversation_id, role, content, created, metadata)."""
    return Message(id=row[0], conversation_id=row[1], role=row[2], content=row[3], created=_iso(row[4]),
                   metadata=row[5] or {})


class PgConversationStore(ConversationStore):
    def __init__(self, settings: dict, **kw):
        super().__init__(settings, **kw)
        self._fp = fingerprint(settings)

    def _run(self, work, *, atomic: bool = False):
        return pg.run(self.settings, work, connect_timeout=self.connect_timeout,
                      operation_timeout=self.operation_timeout, name="conversations", atomic=atomic)

    def close(self) -> None:
        pg.pool_close(self.settings)
        for key in [k for k in _PROVISIONED if k[0] == self._fp]:
            _PROVISIONED.discard(key)

    @staticmethod
    def table(chatbot_id: uuid.UUID | str) -> str:
        return pg.table_name("messages", chatbot_id)

    def drop(self, chatbot_id: uuid.UUID) -> None:
        """Drop the chatbot's data: only for WizChat's own default store when a chatbot is deleted.
        A customer's database is never dropped automatically."""
        table = self.table(chatbot_id)
        self._run(lambda conn: pg.drop_table(conn, table))
        _PROVISIONED.discard((self._fp, table))

    def provision(self, chatbot_id: uuid.UUID) -> None:
        table = self.table(chatbot_id)
        if (self._fp, table) in _PROVISIONED:
            return
        def work(conn: psycopg.Connection) -> None:
            if not pg.relation_exists(conn, table):
                pg.provision_lock(conn)
                self._create(conn, table)

        self._run(work, atomic=True)
        _PROVISIONED.add((self._fp, table))

    @staticmethod
    def _create(conn: psycopg.Connection, table: str) -> None:
        pg.schema_version_ensure(conn)
        ident = sql.Identifier(table)
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL, "
            "content text NOT NULL, created timestamptz NOT NULL DEFAULT now(), metadata jsonb NOT NULL DEFAULT '{{}}')"
        ).format(ident))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (conversation_id, created)").format(
            sql.Identifier(f"{table}_conv"), ident))
        pg.schema_version_set(conn, table, "conversations", SCHEMA_VERSION)

    def _missing(self, table: str, empty):
        """The table was dropped behind our back (by its owner): forget it and answer as for no data."""
        _PROVISIONED.discard((self._fp, table))
        return empty

    def append(self, chatbot_id: uuid.UUID, message: Message) -> bool:
        """Store the message; False if a message with this id was already stored (nothing changes)."""
        table = self.table(chatbot_id)
        values = [str(message.id), str(message.conversation_id), str(message.role),
                  message.content.replace("\x00", ""), _created(message.created), Jsonb(message.metadata or {})]

        def work(conn: psycopg.Connection) -> bool | None:
            try:
                return conn.execute(sql.SQL(
                    "INSERT INTO {} (id, conversation_id, role, content, created, metadata) VALUES (%s, %s, %s, %s, "
                    "%s, %s) ON CONFLICT (id) DO NOTHING"
                ).format(sql.Identifier(table)), values).rowcount == 1
            except pg_errors.UndefinedTable:
                return self._missing(table, None)

        for _ in range(2):
            self.provision(chatbot_id)
            stored = self._run(work)
            if stored is not None:
                return stored
            # the table was dropped behind our back (by its owner): create it again and write once more
        raise BackendError("unavailable", "The conversations table keeps disappearing: check who drops it.")

    def conversations(self, chatbot_id: uuid.UUID, limit: int = 50) -> list[dict]:
        """[{id, started, last, messages}] newest first; times are ISO 8601 strings like Message.created."""
        table = self.table(chatbot_id)
        def work(conn: psycopg.Connection) -> list:
            try:
                return conn.execute(sql.SQL(
                    "SELECT conversation_id, min(created), max(created), count(*) FROM {} GROUP BY conversation_id "
                    "ORDER BY max(created) DESC, conversation_id LIMIT %s"
                ).format(sql.Identifier(table)), [int(limit)]).fetchall()
            except pg_errors.UndefinedTable:
                return self._missing(table, [])

        rows = self._run(work)
        return [{"id": r[0], "started": _iso(r[1]), "last": _iso(r[2]), "messages": int(r[3])} for r in rows]

    def history(self, chatbot_id: uuid.UUID, conversation_id: str, limit: int = 100) -> list[Message]:
        """The conversation's latest `limit` messages, oldest first."""
        table = self.table(chatbot_id)
        def work(conn: psycopg.Connection) -> list:
            try:
                return conn.execute(sql.SQL(
                    "SELECT id, conversation_id, role, content, created, metadata FROM ("
                    "SELECT * FROM {} WHERE conversation_id = %s ORDER BY created DESC, id DESC LIMIT %s"
                    ") AS latest ORDER BY created, id"
                ).format(sql.Identifier(table)), [str(conversation_id), int(limit)]).fetchall()
            except pg_errors.UndefinedTable:
                return self._missing(table, [])

        return [_message(r) for r in self._run(work)]

    def count(self, chatbot_id: uuid.UUID) -> int:
        table = self.table(chatbot_id)
        def work(conn: psycopg.Connection) -> int:
            try:
                return pg.row_count(conn, table)
            except pg_errors.UndefinedTable:
                return self._missing(table, 0)

        return self._run(work)

    # --- reading everything back (operators' migrations) -----------------------------------------------------
    def iter_messages(self, chatbot_id: uuid.UUID, batch_size: int = 500,
                      after_id: str | None = None) -> Iterator[list[Message]]:
        """Every message in id order, `batch_size` at a time (keyset pages)."""
        table = self.table(chatbot_id)
        batch_size = max(1, int(batch_size))

        def page(conn: psycopg.Connection, last: str | None) -> list:
            query, params = pg.keyset_query(("id", "conversation_id", "role", "content", "created", "metadata"),
                                            table, last, batch_size)
            try:
                return conn.execute(query, params).fetchall()
            except pg_errors.UndefinedTable:
                return self._missing(table, [])

        for rows in pg.keyset_pages(lambda last: self._run(lambda conn: page(conn, last)), batch_size, after_id):
            yield [_message(r) for r in rows]

    def ids_present(self, chatbot_id: uuid.UUID, ids: list[str]) -> set[str]:
        table = self.table(chatbot_id)
        if not ids:
            return set()

        def work(conn: psycopg.Connection) -> set[str]:
            try:
                return pg.ids_in(conn, table, ids)
            except pg_errors.UndefinedTable:
                return self._missing(table, set())

        return self._run(work)

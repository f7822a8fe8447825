"""PgVectorStore: a chatbot's chunks in PostgreSQL + pgvector (the platform's database or the customer's).

One table per chatbot, `wizchat_chunks_<uuid hex>`, created on first use under an advisory lock and
recorded in `wizchat_schema_version`. Up to 2,000 dimensions the embedding column is `vector(n)`; above,
`halfvec(n)`, so that the HNSW index (cosine distance) still fits pgvector's limits. Nothing is dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
from pgvector import HalfVector, Vector
from pgvector.psycopg import register_vector
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb

from byoi.backends import pg
from byoi.backends.base import BackendError, Chunk, Hit, VectorStore
from byoi.fingerprint import fingerprint

SCHEMA_VERSION = 1
MAX_VECTOR_DIMENSIONS = 2000  # pgvector's HNSW limit for `vector`; `halfvec` goes to 4,000
MAX_HALFVEC_DIMENSIONS = 4000
EF_SEARCH = 100  # HNSW candidate list at query time: recall over a few extra milliseconds


def column_type(dimensions: int) -> str:
    return "vector" if dimensions <= MAX_VECTOR_DIMENSIONS else "halfvec"


def _register_types(conn: psycopg.Connection) -> bool:
    """Register pgvector's types on this connection once (False while the extension is absent)."""
    if getattr(conn, "_wizchat_vector_types", False):
        return True
    if pg.pgvector_version(conn) is None:
        return False
    register_vector(conn)
    conn._wizchat_vector_types = True
    return True


def _session_ready(conn: psycopg.Connection) -> None:
    """Types registered and the session's HNSW search width set (outside any transaction: a rolled-back
    SET would be undone behind the flag's back)."""
    if getattr(conn, "_wizchat_ef_search", False):
        return
    if _register_types(conn):
        conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(EF_SEARCH)))
        conn._wizchat_ef_search = True


_configure = _session_ready  # every new pooled connection


# (settings fingerprint, table) -> (column type, dimensions) of tables known to exist: saves a catalog
# round trip per call to a remote database. Evicted when the table turns out to be gone.
_LAYOUTS: dict[tuple[str, str], tuple[str, int]] = {}


class PgVectorStore(VectorStore):
    """Chunks with their embeddings; k-NN by cosine distance (lower is closer)."""

    def __init__(self, settings: dict, **kw):
        super().__init__(settings, **kw)
        self._fp = fingerprint(settings)

    # --- plumbing -------------------------------------------------------------------------------------------
    def _run(self, work, *, atomic: bool = False):
        return pg.run(self.settings, work, connect_timeout=self.connect_timeout,
                      operation_timeout=self.operation_timeout, name="vectors", configure=_configure, atomic=atomic)

    def close(self) -> None:
        pg.pool_close(self.settings)
        for key in [k for k in _LAYOUTS if k[0] == self._fp]:
            _LAYOUTS.pop(key, None)

    @staticmethod
    def table(chatbot_id: uuid.UUID | str) -> str:
        return pg.table_name("chunks", chatbot_id)

    def _layout(self, conn: psycopg.Connection, table: str) -> tuple[str, int] | None:
        """(column type, dimensions) of an existing table, None if it does not exist."""
        known = _LAYOUTS.get((self._fp, table))
        if known:
            return known
        row = conn.execute(
            "SELECT t.typname, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
            [sql.Identifier(table).as_string(conn)],
        ).fetchone()
        if not row:
            return None
        layout = (row[0], int(row[1]))
        _LAYOUTS[(self._fp, table)] = layout
        return layout

    def _gone(self, table: str, empty):
        """The table was dropped behind our back (by its owner): forget it and answer as for no data."""
        _LAYOUTS.pop((self._fp, table), None)
        return empty

    # --- contract -------------------------------------------------------------------------------------------
    def provision(self, chatbot_id: uuid.UUID, dimensions: int) -> None:
        table = self.table(chatbot_id)
        dimensions = int(dimensions)
        if not 1 <= dimensions <= MAX_HALFVEC_DIMENSIONS:
            raise BackendError("dimension_mismatch", f"{dimensions} dimensions is outside what pgvector can index "
                                                     f"(1 to {MAX_HALFVEC_DIMENSIONS}).")
        known = _LAYOUTS.get((self._fp, table))
        if known:
            self._check_dimensions(known, dimensions)
            return
        def work(conn: psycopg.Connection) -> tuple[str, int]:
            layout = self._layout(conn, table)
            if layout is None:
                pg.provision_lock(conn)
                layout = self._layout(conn, table)  # another process may have won the lock
            if layout is None:
                self._create(conn, table, dimensions)
                layout = (column_type(dimensions), dimensions)
            return layout

        layout = self._run(work, atomic=True)
        _LAYOUTS[(self._fp, table)] = layout
        self._check_dimensions(layout, dimensions)

    def _check_dimensions(self, layout: tuple[str, int], dimensions: int) -> None:
        if layout[1] != dimensions:
            raise BackendError("dimension_mismatch", f"This chatbot's vector table holds {layout[1]}-dimension "
                                                     f"vectors, but the embeddings have {dimensions}. Set Dimensions "
                                                     f"to {layout[1]}, or re-embed into a new store.")

    def _create(self, conn: psycopg.Connection, table: str, dimensions: int) -> None:
        version = pg.pgvector_ensure(conn)
        kind = column_type(dimensions)
        if pg.version_tuple(version) < (0, 5):
            raise BackendError("version", f"pgvector {version} is too old: pgvector 0.5+ (HNSW indexes) is required.")
        if kind == "halfvec" and pg.version_tuple(version) < (0, 7):
            raise BackendError("version", f"pgvector {version} cannot index {dimensions}-dimension vectors: "
                                          "pgvector 0.7+ (halfvec) is needed above 2,000 dimensions.")
        pg.schema_version_ensure(conn)
        ident = sql.Identifier(table)
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, document_id text NOT NULL, ordinal integer NOT NULL, "
            "text text NOT NULL, metadata jsonb NOT NULL DEFAULT '{{}}', embedding {}({}) NOT NULL)"
        ).format(ident, sql.SQL(kind), sql.Literal(dimensions)))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (document_id)").format(
            sql.Identifier(f"{table}_doc"), ident))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding {})").format(
            sql.Identifier(f"{table}_hnsw"), ident, sql.SQL(f"{kind}_cosine_ops")))
        pg.schema_version_set(conn, table, "vector_store", SCHEMA_VERSION, dimensions)

    def _value(self, kind: str, embedding) -> Vector | HalfVector:
        array = np.asarray(embedding, dtype=np.float32)
        return HalfVector(array) if kind == "halfvec" else Vector(array)

    def upsert(self, chatbot_id: uuid.UUID, chunks: list[Chunk]) -> None:
        """Insert or replace chunks by id. A fresh batch goes in with one COPY; a batch that replaces
        existing ids is merged from a temporary table with ON CONFLICT DO UPDATE."""
        if not chunks:
            return
        unique = list({c.id: c for c in chunks}.values())  # the last one of a repeated id wins
        dimensions = len(unique[0].embedding)
        for chunk in unique:
            if len(chunk.embedding) != dimensions:
                raise BackendError("dimension_mismatch", f"Chunk {chunk.id} has {len(chunk.embedding)} dimensions, "
                                                         f"others have {dimensions}.")
        for _ in range(2):
            self.provision(chatbot_id, dimensions)
            if self._upsert(chatbot_id, unique):
                return
            # The table was dropped behind our back (by its owner): create it again and write once more.
            _LAYOUTS.pop((self._fp, self.table(chatbot_id)), None)
        raise BackendError("unavailable", "The vector table keeps disappearing: check who drops it.")

    def _upsert(self, chatbot_id: uuid.UUID, chunks: list[Chunk]) -> bool:
        """Write the chunks; False if the table turned out to be gone."""
        table = self.table(chatbot_id)
        kind, _ = _LAYOUTS[(self._fp, table)]
        rows = [(c.id, c.document_id, int(c.ordinal), c.text.replace("\x00", ""), Jsonb(c.metadata or {}),
                 self._value(kind, c.embedding)) for c in chunks]
        columns = sql.SQL("id, document_id, ordinal, text, metadata, embedding")
        types = ["text", "text", "int4", "text", "jsonb", kind]

        def work(conn: psycopg.Connection) -> bool:
            _register_types(conn)
            try:
                try:
                    with conn.transaction():  # savepoint: a conflicting id only costs this attempt
                        self._copy(conn, sql.Identifier(table), columns, types, rows)
                    return True
                except pg_errors.UniqueViolation:
                    pass
                staging = sql.Identifier(f"wizchat_staging_{uuid.uuid4().hex}")
                conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    staging, sql.Identifier(table)))
            except pg_errors.UndefinedTable:
                return False
            self._copy(conn, staging, columns, types, rows)
            conn.execute(sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (id) DO UPDATE SET document_id = EXCLUDED.document_id, "
                "ordinal = EXCLUDED.ordinal, text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
                "embedding = EXCLUDED.embedding"
            ).format(sql.Identifier(table), columns, columns, staging))
            return True

        return self._run(work, atomic=True)

    @staticmethod
    def _copy(conn, target, columns, types, rows) -> None:
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
                target, columns)) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def drop(self, chatbot_id: uuid.UUID) -> None:
        """Drop the chatbot's data: only for WizChat's own default store when a chatbot is deleted.
        A customer's database is never dropped automatically."""
        table = self.table(chatbot_id)
        self._run(lambda conn: pg.drop_table(conn, table))
        _LAYOUTS.pop((self._fp, table), None)

    def delete_document(self, chatbot_id: uuid.UUID, document_id: str) -> int:
        table = self.table(chatbot_id)

        def work(conn: psycopg.Connection) -> int:
            if self._layout(conn, table) is None:
                return 0
            try:
                return conn.execute(sql.SQL("DELETE FROM {} WHERE document_id = %s").format(sql.Identifier(table)),
                                    [document_id]).rowcount
            except pg_errors.UndefinedTable:
                return self._gone(table, 0)

        return self._run(work)

    def search(self, chatbot_id: uuid.UUID, embedding: list[float], k: int = 5) -> list[Hit]:
        table = self.table(chatbot_id)
        k = int(k)
        wide = k > EF_SEARCH  # the session's HNSW search width would cap the results below k

        def work(conn: psycopg.Connection):
            layout = self._layout(conn, table)
            if layout is None:
                return []
            kind, dimensions = layout
            if len(embedding) != dimensions:
                raise BackendError("dimension_mismatch", f"The query has {len(embedding)} dimensions, the store "
                                                         f"holds {dimensions}-dimension vectors.")
            if wide:
                _register_types(conn)
                conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(min(k, 1000))))
            else:
                _session_ready(conn)
            value = self._value(kind, embedding)
            try:
                return conn.execute(sql.SQL(
                    "SELECT id, document_id, text, metadata, embedding <=> %s AS distance FROM {} "
                    "ORDER BY embedding <=> %s LIMIT %s"
                ).format(sql.Identifier(table)), [value, value, k]).fetchall()
            except pg_errors.UndefinedTable:
                return self._gone(table, [])

        rows = self._run(work, atomic=wide)
        return [Hit(chunk_id=r[0], document_id=r[1], text=r[2], score=float(r[4]), metadata=r[3] or {})
                for r in rows]

    def count(self, chatbot_id: uuid.UUID) -> int:
        table = self.table(chatbot_id)

        def work(conn: psycopg.Connection) -> int:
            if self._layout(conn, table) is None:
                return 0
            try:
                return pg.row_count(conn, table)
            except pg_errors.UndefinedTable:
                return self._gone(table, 0)

        return self._run(work)

    def document_ids(self, chatbot_id: uuid.UUID) -> list[str]:
        """The documents with chunks in the store (ingestion resumes and migrations compare against it)."""
        table = self.table(chatbot_id)

        def work(conn: psycopg.Connection) -> list[str]:
            if self._layout(conn, table) is None:
                return []
            try:
                rows = conn.execute(sql.SQL("SELECT DISTINCT document_id FROM {} ORDER BY 1").format(
                    sql.Identifier(table))).fetchall()
            except pg_errors.UndefinedTable:
                return self._gone(table, [])
            return [r[0] for r in rows]

        return self._run(work)

    # --- reading everything back (operators' migrations) -----------------------------------------------------
    def dimensions(self, chatbot_id: uuid.UUID) -> int | None:
        table = self.table(chatbot_id)

        def work(conn: psycopg.Connection) -> int | None:
            layout = self._layout(conn, table)
            return layout[1] if layout else None

        return self._run(work)

    def iter_chunks(self, chatbot_id: uuid.UUID, batch_size: int = 500,
                    after_id: str | None = None) -> Iterator[list[Chunk]]:
        """Every chunk in id order, `batch_size` at a time (keyset pages: each batch is one short query)."""
        table = self.table(chatbot_id)
        batch_size = max(1, int(batch_size))

        def page(conn: psycopg.Connection, last: str | None) -> list:
            if self._layout(conn, table) is None:
                return []
            _register_types(conn)
            query, params = pg.keyset_query(("id", "document_id", "ordinal", "text", "metadata", "embedding"),
                                            table, last, batch_size)
            try:
                return conn.execute(query, params, binary=True).fetchall()  # vectors without text parsing
            except pg_errors.UndefinedTable:
                return self._gone(table, [])

        for rows in pg.keyset_pages(lambda last: self._run(lambda conn: page(conn, last)), batch_size, after_id):
            yield [Chunk(id=r[0], document_id=r[1], ordinal=int(r[2]), text=r[3], metadata=r[4] or {},
                         embedding=[float(x) for x in r[5].to_list()]) for r in rows]

    def ids_present(self, chatbot_id: uuid.UUID, ids: list[str]) -> set[str]:
        table = self.table(chatbot_id)
        if not ids:
            return set()

        def work(conn: psycopg.Connection) -> set[str]:
            if self._layout(conn, table) is None:
                return set()
            try:
                return pg.ids_in(conn, table, ids)
            except pg_errors.UndefinedTable:
                return self._gone(table, set())

        return self._run(work)

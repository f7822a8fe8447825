"""Test Connection for a customer's PostgreSQL + pgvector: the shared PostgreSQL steps with PostgreSQL 14+,
then pgvector, then a real insert and k-NN query — all with the dimensions the chatbot's embeddings really
have (`embedding_dimensions`, from services.check_context; the spec's default 3072 when unknown), so that a
pgvector too old for them (halfvec above 2,000 dimensions needs 0.7+) fails here, not at the first ingestion.

A test changes nothing lasting. When pgvector is missing, the pgvector step installs it inside a transaction
that is rolled back: if that works it says, as a warning, that WizChat will install it on first use (as the
vector store does: byoi.backends.pg.pgvector_ensure) and how to do it yourself; if it does not, it fails with
what the DBA must run. The operation runs in a rolled-back transaction too."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from byoi.backends import pg
from byoi.backends.base import BackendError
from byoi.backends.vector_store import MAX_HALFVEC_DIMENSIONS, MAX_VECTOR_DIMENSIONS, column_type
from byoi.checks import Context, Step, Warned, probe_name
from byoi.checks.pg import guarded, pg_conn, pg_server_version, pg_steps
from byoi.registry import KINDS

MIN_PGVECTOR = (0, 5)  # HNSW indexes
MIN_HALFVEC = (0, 7)


def dimensions(ctx: Context) -> int:
    try:
        return int(ctx.settings.get("embedding_dimensions"))
    except (TypeError, ValueError):
        return int(KINDS["embeddings"].field("dimensions").default)


def version(ctx: Context) -> str:
    return pg_server_version(ctx) + "."


def _installable(conn: psycopg.Connection, user: str) -> str:
    """The pgvector version CREATE EXTENSION would install here (done and rolled back), or extension_missing."""
    row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if not row:
        raise BackendError("extension_missing", "pgvector is not available on this server: it has to be installed "
                                                "on the server first (most managed PostgreSQL services include it), "
                                                "then enabled in this database with CREATE EXTENSION vector;")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("CREATE EXTENSION vector")
            return pg.pgvector_version(conn) or row[0]
    except (pg_errors.InsufficientPrivilege, pg_errors.FeatureNotSupported, pg_errors.UndefinedFile):
        raise BackendError("extension_missing", f"pgvector is not installed in this database and user {user!r} may "
                                                "not install it. Ask your DBA to run, in this database: CREATE "
                                                "EXTENSION vector;") from None


def extension(ctx: Context) -> str:
    conn = pg_conn(ctx)
    dims = dimensions(ctx)
    kind = column_type(dims)
    if dims > MAX_HALFVEC_DIMENSIONS:
        raise BackendError("dimension_mismatch", f"The chatbot's embeddings have {dims} dimensions; pgvector can "
                                                 f"index at most {MAX_HALFVEC_DIMENSIONS:,}. Choose embeddings of "
                                                 f"at most {MAX_HALFVEC_DIMENSIONS:,} dimensions.")
    present = pg.pgvector_version(conn)
    found = present or _installable(conn, str(ctx.settings.get("username") or ""))
    if pg.version_tuple(found) < MIN_PGVECTOR:
        raise BackendError("version", f"pgvector {found} is too old: pgvector 0.5+ (HNSW indexes) is required. "
                                      "Upgrade it: ALTER EXTENSION vector UPDATE;")
    if kind == "halfvec" and pg.version_tuple(found) < MIN_HALFVEC:
        raise BackendError("version", f"pgvector {found} cannot index this chatbot's {dims}-dimension vectors: above "
                                      f"{MAX_VECTOR_DIMENSIONS:,} dimensions WizChat stores halfvec, which needs "
                                      "pgvector 0.7+. Upgrade pgvector (ALTER EXTENSION vector UPDATE;) or use "
                                      f"embeddings of at most {MAX_VECTOR_DIMENSIONS:,} dimensions.")
    fits = f"it can index the chatbot's {dims}-dimension vectors ({kind})"
    if present:
        return f"pgvector {found} is installed; {fits}."
    ctx.state["install_vector"] = True
    return Warned(f"pgvector is not installed in this database. This user may install it, so WizChat will run "
                  f"CREATE EXTENSION vector (pgvector {found}) when it first stores vectors; {fits}. The test "
                  "installed it inside a transaction and rolled it back: nothing changed. To install it yourself: "
                  "CREATE EXTENSION vector;")


def _literal(values: list[float]) -> str:
    return "[" + ",".join(f"{v:g}" for v in values) + "]"


def operation(ctx: Context) -> str:
    conn = pg_conn(ctx)
    dims = dimensions(ctx)
    kind = column_type(dims)
    near = [1.0] + [0.0] * (dims - 1)
    far = [0.0] * (dims - 1) + [1.0] if dims > 1 else [-1.0]
    query = ([0.9, 0.1] + [0.0] * (dims - 2)) if dims > 1 else [0.9]
    ident = sql.Identifier(probe_name())
    column = sql.SQL("{}({})").format(sql.SQL(kind), sql.Literal(dims))
    with conn.transaction(force_rollback=True):  # the probe table (and pgvector, if installed now) never stays
        if ctx.state.get("install_vector"):
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, embedding {} NOT NULL)").format(ident, column))
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding {})").format(
            ident, sql.SQL(f"{kind}_cosine_ops")))
        conn.execute(sql.SQL("INSERT INTO {} (id, embedding) VALUES ('near', %s::{}), ('far', %s::{})").format(
            ident, column, column), [_literal(near), _literal(far)])
        conn.execute("SET LOCAL hnsw.ef_search = 40")
        row = conn.execute(sql.SQL("SELECT id FROM {} ORDER BY embedding <=> %s::{} LIMIT 1").format(
            ident, column), [_literal(query)]).fetchone()
    if not row or row[0] != "near":
        raise BackendError("protocol", "The nearest-neighbour query did not return the inserted row.")
    return (f"Created a probe table with a {kind}({dims}) column and an HNSW index, as for this chatbot's "
            "embeddings, inserted two vectors, the k-NN query found the nearest; all rolled back.")


def steps(settings: dict) -> list[Step]:
    result = pg_steps(settings, guarded(version), guarded(operation))
    at = next(i for i, step in enumerate(result) if step.name == "version") + 1
    result.insert(at, Step("extension", guarded(extension)))
    return result

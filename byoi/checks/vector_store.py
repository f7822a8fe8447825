"""Test Connection for a customer's PostgreSQL + pgvector: the shared PostgreSQL steps, then PostgreSQL 14+
and pgvector (created when missing and this user may), then a real insert and k-NN query on a probe table
that is always dropped."""

from __future__ import annotations

from psycopg import sql

from byoi.backends import pg
from byoi.backends.base import BackendError
from byoi.checks import Context, Step, probe_name
from byoi.checks.pg import drop_probe_table, guarded, pg_conn, pg_server_version, pg_steps

MIN_PGVECTOR = (0, 5)  # HNSW indexes


def version(ctx: Context) -> str:
    detail = pg_server_version(ctx)
    conn = pg_conn(ctx)
    present = pg.pgvector_version(conn)
    found = pg.pgvector_ensure(conn)
    if pg.version_tuple(found) < MIN_PGVECTOR:
        raise BackendError("version", f"pgvector {found} is too old: pgvector 0.5+ (HNSW indexes) is required; "
                                      "0.7+ for more than 2,000 dimensions.")
    note = "" if present else " (installed now)"
    if pg.version_tuple(found) < (0, 7):
        note += "; embeddings above 2,000 dimensions need pgvector 0.7+"
    return f"{detail}, pgvector {found}{note}."


def operation(ctx: Context) -> str:
    conn = pg_conn(ctx)
    probe = probe_name()
    ident = sql.Identifier(probe)
    ctx.cleanups.append(drop_probe_table(ctx, probe))
    conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, embedding vector(3) NOT NULL)").format(ident))
    conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(ident))
    conn.execute(sql.SQL("INSERT INTO {} (id, embedding) VALUES ('near', '[1,0,0]'), ('far', '[0,0,1]')").format(ident))
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.ef_search = 40")
        row = conn.execute(sql.SQL("SELECT id, embedding <=> '[0.9,0.1,0]' FROM {} ORDER BY embedding <=> "
                                   "'[0.9,0.1,0]' LIMIT 1").format(ident)).fetchone()
    if not row or row[0] != "near":
        raise BackendError("protocol", "The nearest-neighbour query did not return the inserted row.")
    return "Created a probe table with an HNSW index, inserted two vectors, the k-NN query found the nearest; " \
           "the probe is removed."


def steps(settings: dict) -> list[Step]:
    return pg_steps(settings, guarded(version), guarded(operation))

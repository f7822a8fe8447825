"""Test Connection for a customer's conversations PostgreSQL: the shared PostgreSQL steps, PostgreSQL 14+,
then the spec's "table creation and queries": a probe table created twice (idempotent, under the
provisioning lock, recorded in wizchat_schema_version), a message written twice (stored once) and read
back. The probe table and its schema-version row are always removed."""

from __future__ import annotations

import uuid

from psycopg import sql

from byoi.backends import pg
from byoi.backends.base import BackendError
from byoi.checks import Context, Step, probe_name
from byoi.checks.pg import drop_probe_table, guarded, pg_conn, pg_server_version, pg_steps


def version(ctx: Context) -> str:
    return pg_server_version(ctx) + "."


def _forget_probe(ctx: Context, probe: str):
    def cleanup() -> None:
        conn = ctx.state.get("conn")
        if conn is not None and not conn.closed and pg.relation_exists(conn, pg.SCHEMA_VERSION_TABLE):
            conn.execute(sql.SQL("DELETE FROM {} WHERE table_name = %s").format(
                sql.Identifier(pg.SCHEMA_VERSION_TABLE)), [probe])

    return cleanup


def operation(ctx: Context) -> str:
    conn = pg_conn(ctx)
    probe = probe_name()
    ident = sql.Identifier(probe)
    ctx.cleanups.append(drop_probe_table(ctx, probe))
    ctx.cleanups.append(_forget_probe(ctx, probe))
    for _ in range(2):  # the second creation must be a no-op
        with conn.transaction():
            pg.provision_lock(conn)
            pg.schema_version_ensure(conn)
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL, "
                "content text NOT NULL, created timestamptz NOT NULL DEFAULT now(), metadata jsonb NOT NULL "
                "DEFAULT '{{}}')").format(ident))
            pg.schema_version_set(conn, probe, "probe", 1)
    message_id = uuid.uuid4().hex
    inserted = [
        conn.execute(sql.SQL("INSERT INTO {} (id, conversation_id, role, content) VALUES (%s, 'probe', 'user', "
                             "'WizChat connection test') ON CONFLICT (id) DO NOTHING").format(ident),
                     [message_id]).rowcount
        for _ in range(2)
    ]
    rows = conn.execute(sql.SQL("SELECT content FROM {} WHERE conversation_id = 'probe'").format(ident)).fetchall()
    if inserted != [1, 0] or rows != [("WizChat connection test",)]:
        raise BackendError("protocol", "The test message was not stored exactly once and read back.")
    return "Created a probe table twice (idempotent), wrote a message twice (stored once), read it back; " \
           "the probe is removed."


def steps(settings: dict) -> list[Step]:
    return pg_steps(settings, guarded(version), guarded(operation))

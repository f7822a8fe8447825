"""Test Connection steps shared by the PostgreSQL kinds (vector store, conversations).

address allowed → TCP → TLS (unless SSL Mode is disable) → authentication → version → permissions; each
kind adds its own version detail and operation. The steps connect to the addresses the first step allowed."""

from __future__ import annotations

import struct

import psycopg
from django.conf import settings as dj
from psycopg import sql

from byoi.backends import pg
from byoi.backends.base import BackendError
from byoi.checks import Context, Step, probe_name
from byoi.checks.net import address_step, host_port, open_socket, store_tls_context, tcp_step, tls_handshake
from byoi.errors import classify

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's "let's talk TLS" message
WHERE = host_port(5432)


# --- PostgreSQL steps -------------------------------------------------------------------------------------

def pg_tls(ctx: Context) -> str:
    host = str(ctx.settings.get("host") or "")
    mode = str(ctx.settings.get("ssl_mode") or "require")
    sock = open_socket(ctx, WHERE)
    try:
        sock.sendall(SSL_REQUEST)
        answer = sock.recv(1)
    except TimeoutError:
        sock.close()
        raise BackendError("protocol", "The server did not answer PostgreSQL's SSL request: check that this host "
                                       "and port are a PostgreSQL server.") from None
    except OSError:
        sock.close()
        raise BackendError("protocol", "The server closed the connection instead of answering PostgreSQL's SSL "
                                       "request: check the host and port.") from None
    if answer == b"N":
        sock.close()
        if mode in ("allow", "prefer"):
            return "The server does not offer SSL: the connection will not be encrypted."
        raise BackendError("tls", f"The server does not support SSL, but SSL Mode is {mode!r}: enable SSL on the "
                                  "server or choose 'prefer'.")
    if answer != b"S":
        sock.close()
        raise BackendError("protocol", "The server did not answer like PostgreSQL: check the host and port.")
    context = store_tls_context(verify=mode in ("verify-ca", "verify-full"), check_hostname=mode == "verify-full")
    return tls_handshake(sock, host, context)


def pg_conn(ctx: Context) -> psycopg.Connection:
    conn = ctx.state.get("conn")
    if conn is None:
        raise BackendError("unavailable", "Not connected.")
    return conn


def pg_auth(ctx: Context) -> str:
    try:
        conn = pg.connect(ctx.settings, connect_timeout=dj.BYOI_CONNECT_TIMEOUT,
                          operation_timeout=dj.BYOI_OPERATION_TIMEOUT, addresses=ctx.state.get("addresses"))
    except BackendError as error:
        if error.code == "timeout":
            # The TCP step passed a moment ago: the login itself hung. Poolers (PgBouncer) wait like this for a
            # database they cannot open.
            raise BackendError("timeout", f"The server accepted the connection but the login did not complete "
                                          f"within {dj.BYOI_CONNECT_TIMEOUT:g} seconds. If a pooler such as "
                                          f"PgBouncer is in front, check that the database "
                                          f"{ctx.settings.get('database')!r} exists and the pooler can reach "
                                          "it.") from None
        raise
    ctx.state["conn"] = conn
    ctx.cleanups.append(conn.close)
    encrypted = "SSL" if conn.pgconn.ssl_in_use else "no SSL"
    return f"Logged in as {ctx.settings.get('username')} to database {ctx.settings.get('database')} ({encrypted})."


def pg_server_version(ctx: Context) -> str:
    try:
        num = pg.require_server_version(pg_conn(ctx))
    except psycopg.Error as error:
        raise classify(error, settings=ctx.settings) from None
    return f"PostgreSQL {num // 10000}.{num % 10000}"


def pg_permissions(ctx: Context) -> str:
    conn = pg_conn(ctx)
    probe = probe_name()
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(probe)))
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        raise BackendError("permission", f"User {ctx.settings.get('username')!r} cannot create tables in this "
                                         "database: grant it CREATE on the database's schema (e.g. GRANT CREATE ON "
                                         "SCHEMA public TO the user).") from None
    except psycopg.errors.InvalidSchemaName:
        raise BackendError("permission", "The user has no schema to create tables in: set its search_path or "
                                         "grant CREATE on a schema.") from None
    except psycopg.Error as error:
        raise classify(error, settings=ctx.settings) from None
    return f"User {ctx.settings.get('username')} can create tables in schema {schema}."


def drop_probe_table(ctx: Context, name: str):
    """A cleanup that drops the probe table, on a fresh connection if the check's own one broke."""
    def cleanup() -> None:
        conn = ctx.state.get("conn")
        try:
            if conn is None or conn.closed:
                raise psycopg.OperationalError("closed")
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            pg.drop_table(conn, name)
        except psycopg.Error:
            with pg.connect(ctx.settings, connect_timeout=dj.BYOI_CONNECT_TIMEOUT,
                            operation_timeout=dj.BYOI_OPERATION_TIMEOUT) as fresh:
                pg.drop_table(fresh, name)

    return cleanup


def pg_steps(settings: dict, version, operation) -> list[Step]:
    steps = [Step("address", address_step(WHERE)), Step("tcp", tcp_step(WHERE))]
    if str(settings.get("ssl_mode") or "require") != "disable":
        steps.append(Step("tls", pg_tls))
    steps += [Step("auth", pg_auth), Step("version", version), Step("permissions", pg_permissions),
              Step("operation", operation)]
    return steps


def guarded(run):
    """Wrap a step so that psycopg errors are classified with the settings in hand."""
    def step(ctx: Context):
        try:
            return run(ctx)
        except psycopg.Error as error:
            raise classify(error, settings=ctx.settings) from None

    return step

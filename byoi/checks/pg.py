"""Test Connection steps shared by the PostgreSQL kinds (vector store, conversations).

address allowed → TCP → TLS → authentication → version → permissions; each kind adds its own version detail
and operation. The steps connect to the addresses the first step allowed.

Warnings, not failures (the spec's best practices): SSL modes that do not encrypt (disable; allow, which
uses SSL only when the server insists; prefer against a server without SSL), and a user with admin powers
(superuser, CREATEROLE, CREATEDB or a cloud's admin role): "Never use production database admin credentials"."""

from __future__ import annotations

import struct

import psycopg
from django.conf import settings as dj
from psycopg import sql

from byoi.backends import pg
from byoi.backends.base import BackendError
from byoi.checks import Context, Step, Warned, probe_name
from byoi.checks.net import (
    address_step,
    host_port,
    open_socket,
    store_tls_context,
    tcp_step,
    tls_handshake,
    unencrypted,
)
from byoi.errors import classify

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's "let's talk TLS" message
WHERE = host_port(5432)
VERIFYING = ("verify-ca", "verify-full")
# Managed PostgreSQL services' admin roles: members are admins without being superusers.
CLOUD_ADMIN_ROLES = ("rds_superuser", "cloudsqlsuperuser", "azure_pg_admin", "alloydbsuperuser")


# --- PostgreSQL steps -------------------------------------------------------------------------------------

def pg_tls(ctx: Context) -> str:
    host = str(ctx.settings.get("host") or "")
    mode = str(ctx.settings.get("ssl_mode") or "require")
    ca_cert = str(ctx.settings.get("ca_cert") or "")
    if mode == "disable":
        return unencrypted("SSL Mode is 'disable': the password and every query travel in clear text. Choose "
                           "'require' or stronger if the server offers SSL.")
    # Before connecting: an unusable CA certificate is this step's failure whatever the server does.
    context = store_tls_context(verify=mode in VERIFYING, check_hostname=mode == "verify-full",
                                ca_cert=ca_cert if mode in VERIFYING else "")
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
            return unencrypted(f"the server does not offer SSL, and SSL Mode {mode!r} then connects without it. "
                               "Enable SSL on the server and choose 'require' or stronger.")
        raise BackendError("tls", f"The server does not support SSL, but SSL Mode is {mode!r}: enable SSL on the "
                                  "server or choose 'prefer'.")
    if answer != b"S":
        sock.close()
        raise BackendError("protocol", "The server did not answer like PostgreSQL: check the host and port.")
    detail = tls_handshake(sock, host, context, ca_cert=ca_cert if mode in VERIFYING else "")
    if mode == "allow":
        return unencrypted("SSL Mode 'allow' tries without SSL first, so the connection is not encrypted while "
                           f"the server accepts that (the server does offer SSL: {detail}). Choose 'require' or "
                           "stronger.")
    if ca_cert and mode not in VERIFYING:
        detail += " Your CA certificate is used with SSL Mode verify-ca or verify-full only."
    return detail


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
    user = ctx.settings.get("username")
    done = f"User {user} can create tables in schema {schema}."
    powers = admin_powers(conn)
    if powers:
        return Warned(f"{done} But {user} {' and '.join(powers)}: never use production database admin "
                      "credentials. Create a dedicated user that owns only WizChat's database (or schema) and use "
                      "it here.")
    return done


def admin_powers(conn: psycopg.Connection) -> list[str]:
    """What makes the connected user an administrator, in words ([] for a dedicated service account)."""
    row = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
                       ).fetchone()
    powers = []
    if row and row[0]:
        powers.append("is a superuser")
    else:
        if row and row[1]:
            powers.append("can create roles")
        if row and row[2]:
            powers.append("can create databases")
        admin_roles = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND pg_has_role(current_user, oid, 'MEMBER')",
            [list(CLOUD_ADMIN_ROLES)]).fetchall()]
        if admin_roles:
            powers.append(f"is a member of {', '.join(admin_roles)}")
    return powers


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
    steps = [Step("address", address_step(WHERE)), Step("tcp", tcp_step(WHERE)), Step("tls", pg_tls)]
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

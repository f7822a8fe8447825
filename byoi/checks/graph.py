"""Test Connection for a customer's FalkorDB: address allowed → TCP → TLS (when SSL is on) →
authentication (PING with the password) → version (FalkorDB 4.0+ from MODULE LIST) → operation (write
and read back on a probe graph, always deleted)."""

from __future__ import annotations

import contextlib

import falkordb
import redis
from django.conf import settings as dj

from byoi.backends import graph as backend
from byoi.backends.base import BackendError
from byoi.checks import Context, Step, probe_name
from byoi.checks.net import address_step, host_port, open_socket, store_tls_context, tcp_step, tls_handshake
from byoi.errors import classify

WHERE = host_port(6379)


def _client(ctx: Context) -> redis.Redis:
    """One uncached client for the whole check (a check must not leave a pool behind)."""
    client = ctx.state.get("client")
    if client is None:
        kwargs = backend.client_kwargs(ctx.settings, connect_timeout=dj.BYOI_CONNECT_TIMEOUT,
                                       operation_timeout=dj.BYOI_OPERATION_TIMEOUT,
                                       addresses=ctx.state.get("addresses") or [])
        kwargs["max_connections"] = 2
        client = ctx.state["client"] = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
        ctx.cleanups.append(client.connection_pool.disconnect)
    return client


def _classified(ctx: Context, error: BaseException) -> BackendError:
    return classify(error, settings=ctx.settings, connect_timeout=dj.BYOI_CONNECT_TIMEOUT)


def tls(ctx: Context) -> str:
    sock = open_socket(ctx, WHERE)
    return tls_handshake(sock, str(ctx.settings.get("host") or ""),
                         store_tls_context(verify=True, check_hostname=True))


def auth(ctx: Context) -> str:
    try:
        _client(ctx).ping()
    except redis.ResponseError as error:
        if "noauth" in str(error).lower():
            raise BackendError("auth", "The server requires a password. Enter it in the Password field.") from None
        raise _classified(ctx, error) from None
    except (redis.RedisError, OSError) as error:
        raise _classified(ctx, error) from None
    return "The server accepted the password." if ctx.settings.get("password") else \
        "The server accepts connections without a password."


def version(ctx: Context) -> str:
    try:
        found = backend.falkordb_version(_client(ctx))
    except redis.ResponseError as error:
        if "unknown command" in str(error).lower() or "no permissions" in str(error).lower():
            found = _version_from_graph_commands(ctx)
        else:
            raise _classified(ctx, error) from None
    except (redis.RedisError, OSError) as error:
        raise _classified(ctx, error) from None
    if found == 0:
        raise BackendError("version", "This server has no FalkorDB graph module: FalkorDB 4.0+ is required.")
    if found < backend.MIN_FALKORDB_VERSION:
        raise BackendError("version", f"FalkorDB {backend.version_text(found)} is too old: FalkorDB 4.0+ is required.")
    return f"FalkorDB {backend.version_text(found)}."


def _version_from_graph_commands(ctx: Context) -> int:
    """Hosted servers may forbid MODULE LIST; GRAPH.CONFIG answering still proves the module."""
    try:
        _client(ctx).execute_command("GRAPH.CONFIG", "GET", "TIMEOUT")
    except redis.ResponseError:
        return 0
    return backend.MIN_FALKORDB_VERSION


def operation(ctx: Context) -> str:
    client = _client(ctx)
    name = probe_name()
    probe = falkordb.Graph(client, name)

    def drop() -> None:
        with contextlib.suppress(redis.ResponseError):
            client.execute_command("GRAPH.DELETE", name)

    ctx.cleanups.append(drop)
    timeout = max(1, int(dj.BYOI_OPERATION_TIMEOUT * 1000))
    try:
        probe.query("MERGE (a:Probe {name: $a}) MERGE (b:Probe {name: $b}) MERGE (a)-[:LINKED {type: $t}]->(b)",
                    {"a": "wizchat", "b": "check", "t": "probe"}, timeout=timeout)
        rows = probe.ro_query("MATCH (a:Probe)-[r:LINKED]->(b:Probe) RETURN a.name, r.type, b.name",
                              timeout=timeout).result_set
    except (redis.RedisError, OSError) as error:
        raise _classified(ctx, error) from None
    if rows != [["wizchat", "probe", "check"]]:
        raise BackendError("protocol", "The test graph did not read back what was written.")
    return "Wrote two nodes and a relationship to a probe graph and read them back; the probe graph is deleted."


def steps(settings: dict) -> list[Step]:
    result = [Step("address", address_step(WHERE)), Step("tcp", tcp_step(WHERE))]
    if backend.truthy(settings.get("ssl", True)):
        result.append(Step("tls", tls))
    result += [Step("auth", auth), Step("version", version), Step("operation", operation)]
    return result

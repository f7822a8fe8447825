"""Test Connection for a customer's FalkorDB: address allowed → TCP → TLS (a warning when SSL is off) →
authentication (PING with the password) → version (FalkorDB 4.0+ from MODULE LIST; where MODULE LIST is
denied, "version unknown" once GRAPH.CONFIG proves the graph module) → operation (write and read back on a
probe graph, always deleted)."""

from __future__ import annotations

import contextlib

import falkordb
import redis
from django.conf import settings as dj

from byoi.backends import graph as backend
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
    if not backend.truthy(ctx.settings.get("ssl", True)):
        return unencrypted("SSL is off: the password and the graph's data travel in clear text. Turn SSL on if "
                           "the server offers TLS.")
    ca_cert = str(ctx.settings.get("ca_cert") or "")
    context = store_tls_context(verify=True, check_hostname=True, ca_cert=ca_cert)
    sock = open_socket(ctx, WHERE)
    return tls_handshake(sock, str(ctx.settings.get("host") or ""), context, ca_cert=ca_cert)


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
            if _has_graph_module(ctx):
                return Warned("FalkorDB version unknown: this server does not let this user run MODULE LIST. "
                              "GRAPH.CONFIG answered, so the graph module is there; the next step tries a real "
                              "graph write and read. FalkorDB 4.0+ is required.")
            found = 0
        else:
            raise _classified(ctx, error) from None
    except (redis.RedisError, OSError) as error:
        raise _classified(ctx, error) from None
    if found == 0:
        raise BackendError("version", "This server has no FalkorDB graph module: FalkorDB 4.0+ is required.")
    if found < backend.MIN_FALKORDB_VERSION:
        raise BackendError("version", f"FalkorDB {backend.version_text(found)} is too old: FalkorDB 4.0+ is required.")
    return f"FalkorDB {backend.version_text(found)}."


def _has_graph_module(ctx: Context) -> bool:
    """Hosted servers may forbid MODULE LIST; GRAPH.CONFIG answering still proves the module (not its version)."""
    try:
        _client(ctx).execute_command("GRAPH.CONFIG", "GET", "TIMEOUT")
    except redis.ResponseError:
        return False
    except (redis.RedisError, OSError) as error:
        raise _classified(ctx, error) from None
    return True


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
    return [Step("address", address_step(WHERE)), Step("tcp", tcp_step(WHERE)), Step("tls", tls),
            Step("auth", auth), Step("version", version), Step("operation", operation)]

"""FalkorGraph: a chatbot's knowledge graph in FalkorDB (the platform's server or the customer's).

One graph per chatbot, `wizchat_<uuid hex>`:
  (:Chunk {id, document_id})-[:MENTIONS]->(:Entity {key, name, label})
  (:Entity)-[:RELATED {type, document_id, chunk_id}]->(:Entity)
Entities are matched by `key` (the trimmed, lower-cased name) so that "Acme" and "acme" meet. Cypher is
always parameterised; every query has a server-side timeout and the socket a read timeout. The client
connects to the address netguard allowed and, with SSL on, verifies the certificate against the host
name (CA: the component's own CA certificate, else settings.BYOI_CA_BUNDLE, else the system store)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator

import falkordb
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from byoi import certs, netguard
from byoi.backends.base import BackendError, Entity, Fact, Graph, GraphChunk, Relation
from byoi.errors import Where, chain, classify, generic_rules
from byoi.fingerprint import fingerprint
from byoi.registry import TRUE_WORDS
from byoi.scrub import scrub

MIN_FALKORDB_VERSION = 40000  # MODULE LIST reports 4.16.3 as 41603


def graph_name(chatbot_id: uuid.UUID | str) -> str:
    try:
        return f"wizchat_{uuid.UUID(str(chatbot_id)).hex}"
    except ValueError as error:
        raise BackendError("config", "The chatbot id is not a UUID.") from error


def entity_key(name: str) -> str:
    return " ".join(str(name).split()).lower()


# --- connections pinned to the allowed address ------------------------------------------------------------

def _open_pinned(conn: redis.Connection, addresses: list[str]) -> socket.socket:
    """The first allowed address that answers within the connect timeout (netguard's loop; redis maps the
    raw OSError it raises)."""
    sock = netguard.open_first(addresses, conn.port, conn.socket_connect_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(conn.socket_timeout)
    return sock


class PinnedConnection(redis.Connection):
    """A redis connection to a pre-resolved address (the host name stays for messages)."""

    def __init__(self, *, pinned_addresses: tuple[str, ...] = (), **kwargs):
        self.pinned_addresses = list(pinned_addresses)
        super().__init__(**kwargs)

    def _connect(self):
        if not self.pinned_addresses:
            return super()._connect()
        return _open_pinned(self, self.pinned_addresses)


class PinnedSSLConnection(redis.SSLConnection):
    """TLS to a pre-resolved address; SNI and the certificate check use the host name."""

    def __init__(self, *, pinned_addresses: tuple[str, ...] = (), **kwargs):
        self.pinned_addresses = list(pinned_addresses)
        super().__init__(**kwargs)

    def _connect(self):
        if not self.pinned_addresses:
            return super()._connect()
        sock = _open_pinned(self, self.pinned_addresses)
        try:
            return self._wrap_socket_with_ssl(sock)
        except (OSError, redis.RedisError):
            sock.close()
            raise


def truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


def ca_bundle() -> str | None:
    return netguard.ca_bundle() or None


def client_kwargs(settings: dict, *, connect_timeout: float, operation_timeout: float,
                  addresses: list[str]) -> dict:
    use_ssl = truthy(settings.get("ssl", True))
    kwargs = {
        "connection_class": PinnedSSLConnection if use_ssl else PinnedConnection,
        "pinned_addresses": tuple(addresses),
        "host": str(settings.get("host") or ""),
        "port": int(settings.get("port") or 6379),
        "password": settings.get("password") or None,
        "socket_connect_timeout": connect_timeout,
        # The server's own query timeout (the operation timeout) fires first; the socket timeout, half a second
        # later, catches a silent server within the promised "operation timeout + 1 s".
        "socket_timeout": operation_timeout + 0.5,
        "decode_responses": True,
        "protocol": 2,
        # One immediate retry on a dropped connection (a restarted server, a proxy's idle cut); none on
        # timeouts, which would double the wait. Every write is a MERGE, so a repeat is harmless.
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        "max_connections": 8,
    }
    if use_ssl:
        kwargs.update(ssl_cert_reqs="required", ssl_check_hostname=True, ssl_ca_certs=ca_bundle())
        if settings.get("ca_cert"):  # the customer's own CA, instead of WizChat's
            kwargs.update(ssl_ca_certs=None, ssl_ca_data=certs.normalize(settings["ca_cert"]))
    return kwargs


def redis_rules(error: BaseException, where: Where) -> BackendError | None:
    """redis / FalkorDB failures (byoi.errors.classify calls this); with the component's settings, also what its
    SSL and password settings explain."""
    use_ssl = truthy(where.setting("ssl", True))
    for link in chain(error):
        if isinstance(link, ssl.SSLError):
            found = generic_rules(link, where)
            if use_ssl and not isinstance(link, ssl.SSLCertVerificationError):
                return BackendError("tls", found.message.rstrip(".") + ": does the server speak TLS on this port? "
                                                                       "Turn SSL off for a plain server.")
            return found
    text = str(error).lower()
    if where.settings is not None and not where.setting("password") \
            and (isinstance(error, redis.AuthenticationError) or "noauth" in text):
        return BackendError("auth", "The server requires a password. Enter it in the Password field.")
    if isinstance(error, redis.ResponseError) and "without any password configured" in text:
        return BackendError("auth", "The server has no password set: leave the password empty.")
    if isinstance(error, redis.ResponseError) and "unknown command" in text:
        return BackendError("version", "The server does not know the GRAPH commands: FalkorDB 4.0+ is required.")
    if isinstance(error, redis.ResponseError) and ("timeout" in text or "timed out" in text):
        return BackendError("timeout", "The graph query did not finish within the operation timeout.")
    if not use_ssl and isinstance(error, redis.ConnectionError) and not isinstance(error, redis.AuthenticationError) \
            and ("closed by server" in text or "connection reset" in text or "error while reading" in text
                 or "protocol error" in text):
        return BackendError("tls", f"{where.host}:{where.port} closed the connection without answering: it probably "
                                   "expects TLS. Turn SSL on.")
    if not use_ssl and isinstance(error, redis.TimeoutError):
        return BackendError("timeout", f"{where.host}:{where.port} accepted the connection but did not answer: check "
                                       "the port, and turn SSL on if the server expects TLS.")
    if isinstance(error, redis.AuthenticationError) or "wrongpass" in text or "noauth" in text \
            or "invalid password" in text or "authentication required" in text:
        return BackendError("auth", f"The server refused the password{where.at}.")
    if isinstance(error, redis.TimeoutError) or "timeout" in text or "timed out" in text:
        return BackendError("timeout", f"Connection{where.to} did not complete{where.connect_within}.")
    if "ssl" in text or "certificate" in text:
        return BackendError("tls", f"The TLS handshake{where.to} failed.")
    if "refused" in text:
        return BackendError("refused", f"Connection{where.to} refused: nothing listens on this port.")
    if "name or service not known" in text or "nodename nor servname" in text:
        return BackendError("dns", f"The host name{where.name} does not resolve.")
    if isinstance(error, redis.ConnectionError):
        if error.__cause__ is not None or error.__context__ is not None:
            return None  # the cause (socket, ssl…) says what happened
        return BackendError("unavailable", f"The connection{where.to} failed.")
    if isinstance(error, redis.ResponseError):
        return BackendError("unavailable", f"FalkorDB refused the query: {scrub(str(error))[:200]}")
    return None


_CLIENTS: dict[str, tuple[str, redis.Redis]] = {}  # key -> (settings fingerprint, client)
_CLIENTS_LOCK = threading.Lock()
_PROVISIONED: set[tuple[str, str]] = set()


def client_get(settings: dict, *, connect_timeout: float, operation_timeout: float) -> redis.Redis:
    """The cached client (and its connection pool) for these settings."""
    key = fingerprint([settings, connect_timeout, operation_timeout, ca_bundle()])
    entry = _CLIENTS.get(key)
    if entry is not None:
        return entry[1]
    addresses = netguard.pinned_addresses(settings, 6379)
    # One client per process serves every chatbot on these settings (all of WizChat's defaults share one) from the
    # threads of a web worker: a query that finds every connection busy waits for one — as long as opening one may
    # take — instead of failing at once ("Too many connections", which redis.ConnectionPool raises: 503s under 40
    # concurrent chats in the load test of issue 16). After the wait: ConnectionError, classified "unavailable".
    pool = redis.BlockingConnectionPool(timeout=max(2.0, connect_timeout),
                                        **client_kwargs(settings, connect_timeout=connect_timeout,
                                                        operation_timeout=operation_timeout, addresses=addresses))
    client = redis.Redis(connection_pool=pool)
    with _CLIENTS_LOCK:
        entry = _CLIENTS.setdefault(key, (fingerprint(settings), client))
    return entry[1]


def client_close(settings: dict | None = None) -> None:
    with _CLIENTS_LOCK:
        wanted = None if settings is None else fingerprint(settings)
        victims = [k for k, (fp, _) in _CLIENTS.items() if wanted is None or fp == wanted]
        clients = [_CLIENTS.pop(k)[1] for k in victims]
        for key in [k for k in _PROVISIONED if wanted is None or k[0] == wanted]:
            _PROVISIONED.discard(key)
    for client in clients:
        with contextlib.suppress(Exception):
            client.connection_pool.disconnect()


def falkordb_version(client: redis.Redis) -> int:
    """FalkorDB's module version as an integer (4.16.3 → 41603), 0 if the graph module is absent."""
    for module in client.execute_command("MODULE", "LIST") or []:
        if isinstance(module, dict):
            name, version = module.get("name"), module.get("ver")
        else:  # RESP2 without decoding into dicts: a flat [key, value, …] list
            pairs = dict(zip(module[::2], module[1::2], strict=False))
            name, version = pairs.get("name"), pairs.get("ver")
        if str(name).lower() in ("graph", "falkordb"):
            return int(version or 0)
    return 0


def version_text(version: int) -> str:
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


# One query writes a group of chunks: the entities first (each key once, with the name and label its first
# mention gives it — what writing the chunks one by one in order would have kept, ON CREATE being first-wins),
# then the chunk nodes, the MENTIONS edges and the RELATED edges, each an UNWIND over a list parameter. Every
# write is a MERGE, so writing a group again (a retry after a failure midway) adds nothing. `count(*)` ends
# each step with exactly one row, so an empty list does not stop the steps after it.
_UPSERT_MANY = """
UNWIND $entities AS e
MERGE (n:Entity {key: e.key}) ON CREATE SET n.name = e.name, n.label = e.label
WITH count(*) AS entities
UNWIND $chunks AS ch
MERGE (c:Chunk {id: ch.id}) SET c.document_id = ch.document_id
WITH count(*) AS chunks
UNWIND $mentions AS m
MATCH (c:Chunk {id: m.chunk_id}), (n:Entity {key: m.key})
MERGE (c)-[:MENTIONS]->(n)
WITH count(*) AS mentions
UNWIND $relations AS r
MATCH (a:Entity {key: r.source_key}), (b:Entity {key: r.target_key})
MERGE (a)-[:RELATED {type: r.type, document_id: r.document_id, chunk_id: r.chunk_id}]->(b)
"""
# Bounds of one query, whatever a document holds: at most this many chunk rows, and this many rows in all
# (entities + chunks + mentions + relations; a row is one short map). A bigger group takes several queries, in
# the order above, so every edge's nodes are written by an earlier query or an earlier step of the same one.
QUERY_MAX_CHUNKS = 256
QUERY_MAX_ROWS = 4096
_STEPS = ("entities", "chunks", "mentions", "relations")


def upsert_rows(chunks: list[GraphChunk]) -> dict[str, list[dict]]:
    """The rows `_UPSERT_MANY` takes for these chunks, in write order, each entity, chunk, mention and relation
    once."""
    entities: dict[str, dict] = {}
    chunk_rows: dict[str, dict] = {}
    mentions: dict[tuple, dict] = {}
    relations: dict[tuple, dict] = {}
    for chunk in chunks:
        chunk_id, document_id = str(chunk.chunk_id), str(chunk.document_id)
        chunk_rows[chunk_id] = {"id": chunk_id, "document_id": document_id}
        for entity in chunk.entities:
            key = entity_key(entity.name)
            if key:
                entities.setdefault(key, {"key": key, "name": str(entity.name).strip(),
                                          "label": str(entity.label or "Entity")})
                mentions.setdefault((chunk_id, key), {"chunk_id": chunk_id, "key": key})
        for relation in chunk.relations:
            source, target = entity_key(relation.source), entity_key(relation.target)
            if source and target:
                entities.setdefault(source, {"key": source, "name": str(relation.source).strip(), "label": "Entity"})
                entities.setdefault(target, {"key": target, "name": str(relation.target).strip(), "label": "Entity"})
                kind = str(relation.type or "RELATED_TO")
                relations.setdefault((source, kind, target, chunk_id, document_id), {
                    "source_key": source, "target_key": target, "type": kind, "document_id": document_id,
                    "chunk_id": chunk_id})
    return {"entities": list(entities.values()), "chunks": list(chunk_rows.values()),
            "mentions": list(mentions.values()), "relations": list(relations.values())}


def upsert_queries(rows: dict[str, list[dict]], max_rows: int, max_chunks: int) -> Iterator[dict[str, list[dict]]]:
    """The parameters of each query writing `rows`: the steps' rows in order, cut where a query would hold more
    than `max_rows` rows or `max_chunks` chunks."""
    params, used = {step: [] for step in _STEPS}, 0
    for step in _STEPS:
        for row in rows[step]:
            if used >= max_rows or (step == "chunks" and len(params["chunks"]) >= max_chunks):
                yield params
                params, used = {step: [] for step in _STEPS}, 0
            params[step].append(row)
            used += 1
    if used:
        yield params


_TOUCHED = """
MATCH (c:Chunk {document_id: $document_id})-[:MENTIONS]->(e:Entity) RETURN DISTINCT e.key AS key
UNION
MATCH (a:Entity)-[r:RELATED {document_id: $document_id}]->(b:Entity) UNWIND [a.key, b.key] AS key RETURN DISTINCT key
"""

# Grouped, ranked and cut on the server: only `limit` rows come back (parsing every relation in Python cost
# more than the query itself).
_NEIGHBOURS = """
UNWIND $keys AS k MATCH (:Entity {key: k})-[r:RELATED]-(:Entity)
WITH DISTINCT r
WITH startNode(r).name AS source, r.type AS kind, endNode(r).name AS target, collect(DISTINCT r.chunk_id) AS found
WITH source, kind, target, [c IN found WHERE c <> ''] AS chunk_ids
RETURN source, kind, target, chunk_ids ORDER BY size(chunk_ids) DESC, source, kind, target LIMIT $limit
"""


class FalkorGraph(Graph):
    def __init__(self, settings: dict, **kw):
        super().__init__(settings, **kw)
        self._fp = fingerprint(settings)

    def close(self) -> None:
        client_close(self.settings)

    @property
    def client(self) -> redis.Redis:
        return client_get(self.settings, connect_timeout=self.connect_timeout,
                          operation_timeout=self.operation_timeout)

    def _graph(self, chatbot_id) -> falkordb.Graph:
        return falkordb.Graph(self.client, graph_name(chatbot_id))

    @property
    def _timeout_ms(self) -> int:
        return max(1, int(self.operation_timeout * 1000))

    def _run(self, chatbot_id, query: str, params: dict | None = None, *, read_only: bool = False):
        try:
            graph = self._graph(chatbot_id)
            call = graph.ro_query if read_only else graph.query
            return call(query, params or {}, timeout=self._timeout_ms)
        except redis.ResponseError as error:
            if read_only and "empty key" in str(error).lower():
                return None  # the graph does not exist yet: nothing stored
            raise classify(error, settings=self.settings, connect_timeout=self.connect_timeout) from None
        except (redis.RedisError, OSError) as error:
            raise classify(error, settings=self.settings, connect_timeout=self.connect_timeout) from None

    # --- contract -------------------------------------------------------------------------------------------
    def provision(self, chatbot_id: uuid.UUID) -> None:
        name = graph_name(chatbot_id)
        if (self._fp, name) in _PROVISIONED:
            return
        for query in ("CREATE INDEX FOR (e:Entity) ON (e.key)",
                      "CREATE INDEX FOR (c:Chunk) ON (c.id, c.document_id)",
                      "CREATE INDEX FOR ()-[r:RELATED]-() ON (r.document_id)"):
            try:
                self._graph(chatbot_id).query(query, timeout=self._timeout_ms)
            except redis.ResponseError as error:
                if "already indexed" not in str(error).lower():
                    raise classify(error, settings=self.settings, connect_timeout=self.connect_timeout) from None
            except (redis.RedisError, OSError) as error:
                raise classify(error, settings=self.settings, connect_timeout=self.connect_timeout) from None
        _PROVISIONED.add((self._fp, name))

    def upsert(self, chatbot_id: uuid.UUID, document_id: str, chunk_id: str, entities: list[Entity],
               relations: list[Relation]) -> None:
        self.upsert_many(chatbot_id, [GraphChunk(chunk_id=str(chunk_id), document_id=str(document_id),
                                                 entities=list(entities), relations=list(relations))])

    def upsert_many(self, chatbot_id: uuid.UUID, chunks: list[GraphChunk]) -> None:
        """One query per QUERY_MAX_CHUNKS chunks / QUERY_MAX_ROWS rows (each with the operation timeout)."""
        if not chunks:
            return
        self.provision(chatbot_id)
        for params in upsert_queries(upsert_rows(chunks), QUERY_MAX_ROWS, QUERY_MAX_CHUNKS):
            self._run(chatbot_id, _UPSERT_MANY, params)

    def delete_document(self, chatbot_id: uuid.UUID, document_id: str) -> None:
        """Remove the document's chunks and relations, then the entities nothing refers to any more."""
        params = {"document_id": str(document_id)}
        touched = self._run(chatbot_id, _TOUCHED, params, read_only=True)
        if touched is None:
            return
        keys = sorted({row[0] for row in touched.result_set if row[0] is not None})
        self._run(chatbot_id, "MATCH ()-[r:RELATED {document_id: $document_id}]->() DELETE r", params)
        self._run(chatbot_id, "MATCH (c:Chunk {document_id: $document_id}) DETACH DELETE c", params)
        if keys:
            self._run(chatbot_id, "UNWIND $keys AS k MATCH (e:Entity {key: k}) WHERE NOT (e)--() DELETE e",
                      {"keys": keys})

    def neighbourhood(self, chatbot_id: uuid.UUID, entity_names: list[str], limit: int = 20) -> list[Fact]:
        """Relations touching the named entities, each with the chunks that stated it (most-stated first)."""
        keys = sorted({entity_key(n) for n in entity_names if entity_key(n)})
        if not keys:
            return []
        limit = max(0, int(limit))
        result = self._run(chatbot_id, _NEIGHBOURS, {"keys": keys, "limit": limit}, read_only=True)
        if result is None:
            return []
        facts = [Fact(source, kind, target, list(chunk_ids or [])) for source, kind, target, chunk_ids
                 in result.result_set]
        return sorted(facts, key=lambda f: (-len(f.chunk_ids), f.source, f.relation, f.target))

    def count(self, chatbot_id: uuid.UUID) -> dict:
        nodes = self._run(chatbot_id, "MATCH (n) RETURN count(n)", read_only=True)
        if nodes is None:
            return {"nodes": 0, "relationships": 0}
        edges = self._run(chatbot_id, "MATCH ()-[r]->() RETURN count(r)", read_only=True)
        return {"nodes": int(nodes.result_set[0][0]), "relationships": int(edges.result_set[0][0])}

    def delete_graph(self, chatbot_id: uuid.UUID) -> None:
        """Drop the chatbot's whole graph: only for explicit operator actions (never automatic)."""
        try:
            self.client.execute_command("GRAPH.DELETE", graph_name(chatbot_id))
        except redis.ResponseError as error:
            if "empty key" not in str(error).lower() and "does not exist" not in str(error).lower():
                raise classify(error, settings=self.settings, connect_timeout=self.connect_timeout) from None
        except (redis.RedisError, OSError) as error:
            raise classify(error, settings=self.settings, connect_timeout=self.connect_timeout) from None
        _PROVISIONED.discard((self._fp, graph_name(chatbot_id)))

    drop = delete_graph

    # --- reading everything back (operators' migrations) -----------------------------------------------------
    def iter_chunks(self, chatbot_id: uuid.UUID, batch_size: int = 500,
                    after_id: str | None = None) -> Iterator[list[GraphChunk]]:
        """Every chunk node with the entities it mentions and the relations it stated, in chunk id order."""
        batch_size = max(1, int(batch_size))
        last = after_id
        while True:
            found = self._run(chatbot_id, "MATCH (c:Chunk) WHERE $after IS NULL OR c.id > $after "
                                          "RETURN c.id, c.document_id ORDER BY c.id LIMIT $n",
                              {"after": last, "n": batch_size}, read_only=True)
            rows = found.result_set if found is not None else []
            if not rows:
                return
            chunks = {row[0]: GraphChunk(chunk_id=row[0], document_id=row[1] or "") for row in rows}
            ids = list(chunks)
            mentions = self._run(chatbot_id, "UNWIND $ids AS id MATCH (c:Chunk {id: id})-[:MENTIONS]->(e:Entity) "
                                             "RETURN c.id, e.name, e.label ORDER BY c.id, e.key",
                                 {"ids": ids}, read_only=True)
            for chunk_id, name, label in (mentions.result_set if mentions is not None else []):
                chunks[chunk_id].entities.append(Entity(name=name, label=label or "Entity"))
            related = self._run(chatbot_id, "UNWIND $ids AS id MATCH (a:Entity)-[r:RELATED {chunk_id: id}]->(b:Entity) "
                                            "RETURN r.chunk_id, a.name, r.type, b.name ORDER BY r.chunk_id, a.key, b.key",
                                {"ids": ids}, read_only=True)
            for chunk_id, source, kind, target in (related.result_set if related is not None else []):
                chunks[chunk_id].relations.append(Relation(source=source, target=target, type=kind or "RELATED_TO"))
            yield list(chunks.values())
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    def ids_present(self, chatbot_id: uuid.UUID, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        found = self._run(chatbot_id, "UNWIND $ids AS id MATCH (c:Chunk {id: id}) RETURN c.id",
                          {"ids": [str(i) for i in ids]}, read_only=True)
        return {row[0] for row in found.result_set} if found is not None else set()

"""The knowledge graph written a group of chunks per query (FalkorGraph.upsert_many, and ingestion through it),
against the real FalkorDB of the test session: the same nodes, edges and properties as the query it replaced,
which wrote one chunk at a time; nothing twice when a group is written again; every query bounded in size."""

import uuid
from pathlib import Path

import pytest

from byoi.access import ComponentFailed, resolve_stack
from byoi.backends import graph as graph_module
from byoi.backends.base import BackendError, Entity, GraphChunk, Relation
from byoi.backends.graph import FalkorGraph, entity_key, upsert_queries, upsert_rows
from chatbots import extraction, ingestion
from chatbots.ingestion import chunk_text, document_add, document_ingest, document_retry
from chatbots.models import Document
from tests.peers import PEERS

# The query every chunk was written with before writes were grouped (and how its parameters were built):
# the reference the grouped writes must reproduce exactly.
ONE_CHUNK_AT_A_TIME = """
MERGE (c:Chunk {id: $chunk_id}) SET c.document_id = $document_id
WITH c
FOREACH (e IN $entities |
  MERGE (n:Entity {key: e.key}) ON CREATE SET n.name = e.name, n.label = e.label
  MERGE (c)-[:MENTIONS]->(n))
FOREACH (r IN $relations |
  MERGE (a:Entity {key: r.source_key}) ON CREATE SET a.name = r.source, a.label = 'Entity'
  MERGE (b:Entity {key: r.target_key}) ON CREATE SET b.name = r.target, b.label = 'Entity'
  MERGE (a)-[:RELATED {type: r.type, document_id: $document_id, chunk_id: $chunk_id}]->(b))
"""

DOCS = Path(__file__).resolve().parent.parent / "docs"


def write_one_chunk_at_a_time(graph: FalkorGraph, bot, chunk: GraphChunk) -> None:
    entity_rows, relation_rows = {}, {}
    for entity in chunk.entities:
        key = entity_key(entity.name)
        if key:
            entity_rows.setdefault(key, {"key": key, "name": str(entity.name).strip(),
                                         "label": str(entity.label or "Entity")})
    for relation in chunk.relations:
        source, target = entity_key(relation.source), entity_key(relation.target)
        if source and target:
            kind = str(relation.type or "RELATED_TO")
            relation_rows.setdefault((source, kind, target), {
                "source_key": source, "source": str(relation.source).strip(),
                "target_key": target, "target": str(relation.target).strip(), "type": kind})
    graph._run(bot, ONE_CHUNK_AT_A_TIME, {"chunk_id": chunk.chunk_id, "document_id": chunk.document_id,
                                          "entities": list(entity_rows.values()),
                                          "relations": list(relation_rows.values())})


def contents(graph: FalkorGraph, bot) -> tuple[list, list]:
    """Every node (labels, properties) and edge (type, properties, its two ends' properties), sorted."""
    nodes = graph._run(bot, "MATCH (n) RETURN labels(n), properties(n)", read_only=True).result_set
    edges = graph._run(bot, "MATCH (a)-[r]->(b) RETURN type(r), properties(r), properties(a), properties(b)",
                       read_only=True).result_set

    def flat(props):
        return tuple(sorted(props.items()))

    return (sorted((tuple(labels), flat(props)) for labels, props in nodes),
            sorted((kind, flat(props), flat(a), flat(b)) for kind, props, a, b in edges))


def extracted(document_id: str, pieces: list[str]) -> list[GraphChunk]:
    out = []
    for ordinal, piece in enumerate(pieces):
        entities, relations = extraction.extract_rules(piece)
        if entities:
            out.append(GraphChunk(f"{document_id}:{ordinal}", document_id, entities, relations))
    return out


def real_text() -> str:
    return "\n\n".join(path.read_text() for path in sorted(DOCS.glob("*.md")))[:120_000]


@pytest.fixture
def graph():
    backend = FalkorGraph({"host": "127.0.0.1", "port": PEERS.falkor.port, "password": PEERS.falkor.password,
                           "ssl": False})
    created = []
    backend.bot = lambda: created.append(uuid.uuid4()) or created[-1]
    yield backend
    for bot in created:
        backend.delete_graph(bot)
    backend.close()


# Hand-made chunks for what real text rarely shows at once: a name first seen in another case or with spaces,
# an entity first seen as a relation's end (label from there: 'Entity'), one relation stated by two chunks,
# a self-relation once keys are normalised, a chunk of two documents written again, hostile strings.
TRICKY = [
    GraphChunk("d1:0", "d1", [Entity("Acme  Corp", "Company"), Entity("alice", "Person")],
               [Relation("Alice", "ACME CORP", "WORKS_AT"), Relation("Bob", "Acme Corp", "KNOWS")]),
    GraphChunk("d1:1", "d1", [Entity("Bob", "Person"), Entity("ACME CORP")],
               [Relation("Alice", "Acme Corp", "WORKS_AT"), Relation("Acme Corp", "acme  corp", "IS")]),
    GraphChunk("d2:0", "d2", [Entity('Rob"; MATCH (n) DETACH DELETE n //', "Thing"), Entity("{x: 1}")],
               [Relation('Rob"; MATCH (n) DETACH DELETE n //', "{x: 1}", "X\"Y\\")]),
    GraphChunk("d2:1", "d2", [], [Relation("Carol", "Dave", "")]),
    GraphChunk("d1:1", "d1", [Entity("Erin")], []),
]


def test_it_writes_tricky_chunks_as_one_chunk_at_a_time_did(graph):
    before, after = graph.bot(), graph.bot()
    for chunk in TRICKY:
        write_one_chunk_at_a_time(graph, before, chunk)

    graph.upsert_many(after, TRICKY)

    assert contents(graph, after) == contents(graph, before)


def test_it_writes_a_real_document_as_one_chunk_at_a_time_did_even_cut_into_small_queries(graph, monkeypatch):
    chunks = extracted("doc", chunk_text(real_text(), 300, 50))
    assert len(chunks) > graph_module.QUERY_MAX_CHUNKS
    before, grouped, small = graph.bot(), graph.bot(), graph.bot()
    for chunk in chunks:
        write_one_chunk_at_a_time(graph, before, chunk)

    graph.upsert_many(grouped, chunks)
    monkeypatch.setattr(graph_module, "QUERY_MAX_ROWS", 37)
    monkeypatch.setattr(graph_module, "QUERY_MAX_CHUNKS", 5)
    for start in range(0, len(chunks), 100):
        graph.upsert_many(small, chunks[start:start + 100])

    expected = contents(graph, before)
    assert len(expected[0]) > 500 and len(expected[1]) > 1000
    assert contents(graph, grouped) == expected
    assert contents(graph, small) == expected


def test_it_matches_a_fixed_expectation(graph):
    bot = graph.bot()
    graph.upsert_many(bot, TRICKY[:2])

    nodes, edges = contents(graph, bot)

    assert nodes == [
        (("Chunk",), (("document_id", "d1"), ("id", "d1:0"))),
        (("Chunk",), (("document_id", "d1"), ("id", "d1:1"))),
        (("Entity",), (("key", "acme corp"), ("label", "Company"), ("name", "Acme  Corp"))),
        (("Entity",), (("key", "alice"), ("label", "Person"), ("name", "alice"))),
        (("Entity",), (("key", "bob"), ("label", "Entity"), ("name", "Bob"))),
    ]
    acme, alice, bob = ((("key", "acme corp"), ("label", "Company"), ("name", "Acme  Corp")),
                        (("key", "alice"), ("label", "Person"), ("name", "alice")),
                        (("key", "bob"), ("label", "Entity"), ("name", "Bob")))
    chunk0, chunk1 = (("document_id", "d1"), ("id", "d1:0")), (("document_id", "d1"), ("id", "d1:1"))

    def related(kind, chunk):
        return (("chunk_id", chunk), ("document_id", "d1"), ("type", kind))

    assert edges == sorted([
        ("MENTIONS", (), chunk0, acme), ("MENTIONS", (), chunk0, alice),
        ("MENTIONS", (), chunk1, acme), ("MENTIONS", (), chunk1, bob),
        ("RELATED", related("WORKS_AT", "d1:0"), alice, acme), ("RELATED", related("KNOWS", "d1:0"), bob, acme),
        ("RELATED", related("WORKS_AT", "d1:1"), alice, acme), ("RELATED", related("IS", "d1:1"), acme, acme),
    ])


def test_it_adds_nothing_when_a_group_is_written_again_after_a_failure_midway(graph):
    chunks = extracted("doc", chunk_text(real_text()[:30_000], 300, 50))
    once, again = graph.bot(), graph.bot()
    graph.upsert_many(once, chunks)

    graph.upsert_many(again, chunks[:len(chunks) // 2])  # the first half reached the graph, then it failed
    graph.upsert_many(again, chunks)

    assert contents(graph, again) == contents(graph, once)


def test_it_bounds_every_query_of_a_huge_group():
    chunk = GraphChunk("d:0", "d", [Entity(f"Name {i}") for i in range(3000)],
                       [Relation(f"Name {i}", f"Name {i + 1}", "NEXT") for i in range(2999)])
    chunks = [chunk] + [GraphChunk(f"d:{n}", "d", [Entity("Acme")], []) for n in range(1, 1000)]
    rows = upsert_rows(chunks)

    queries = list(upsert_queries(rows, 4096, 256))

    assert all(sum(len(q[step]) for step in q) <= 4096 and len(q["chunks"]) <= 256 for q in queries)
    assert {step: [row for q in queries for row in q[step]] for step in rows} == rows


def test_it_writes_the_entities_of_a_group_before_what_refers_to_them():
    chunks = [GraphChunk(f"d:{n}", "d", [Entity(f"E{n}")], [Relation(f"E{n}", f"F{n}", "R")]) for n in range(50)]
    order = [step for q in upsert_queries(upsert_rows(chunks), 7, 3) for step in ("entities", "chunks",
                                                                                   "mentions", "relations")
             for _ in q[step]]

    assert order == sorted(order, key=["entities", "chunks", "mentions", "relations"].index)


# -- through ingestion ---------------------------------------------------------------------------------------

def upserts_counted(monkeypatch) -> list[int]:
    calls = []
    original = FalkorGraph.upsert_many

    def counted(self, chatbot_id, chunks):
        calls.append(len(chunks))
        return original(self, chatbot_id, chunks)

    monkeypatch.setattr(FalkorGraph, "upsert_many", counted)
    return calls


def test_an_ingestion_writes_the_graph_as_one_chunk_at_a_time_did(chatbot, graph, monkeypatch):
    chatbot.chunk_size, chatbot.chunk_overlap = 300, 50
    chatbot.save()
    text = real_text()[:60_000]
    calls = upserts_counted(monkeypatch)
    document, _ = document_add(chatbot, title="Docs", text=text, queue=False)

    document = document_ingest(document.id)

    pieces = chunk_text(ingestion.normalize(text), 300, 50)
    assert document.status == Document.Status.DONE and document.chunks_graphed == len(pieces) > 256
    assert len(calls) < len(pieces) / 100 and max(calls) <= ingestion.UPSERT_MAX_CHUNKS
    reference = graph.bot()
    for chunk in extracted(str(document.id), pieces):
        write_one_chunk_at_a_time(graph, reference, chunk)
    stored = resolve_stack(chatbot).graph
    assert contents(stored, chatbot.id) == contents(graph, reference)


def test_a_graph_failure_midway_keeps_the_groups_written_and_the_retry_writes_the_rest(chatbot, graph, monkeypatch,
                                                                                      settings):
    settings.BYOI_BREAKER_COOLDOWN = 0
    chatbot.chunk_size, chatbot.chunk_overlap = 300, 50
    chatbot.save()
    text = real_text()[:60_000]
    calls = upserts_counted(monkeypatch)
    counted = FalkorGraph.upsert_many

    def failing_second(self, chatbot_id, chunks):
        if len(calls) == 1:
            calls.append(len(chunks))
            raise BackendError("timeout", "The graph query did not finish within the operation timeout.")
        return counted(self, chatbot_id, chunks)

    monkeypatch.setattr(FalkorGraph, "upsert_many", failing_second)
    document, _ = document_add(chatbot, title="Docs", text=text, queue=False)
    with pytest.raises(ComponentFailed) as failed:
        document_ingest(document.id)
    document.refresh_from_db()
    assert failed.value.kind == "graph" and document.error_code == "timeout"
    assert document.chunks_embedded == document.chunks_total
    assert 0 < document.chunks_graphed <= ingestion.UPSERT_MAX_CHUNKS < document.chunks_total

    document_retry(document)
    document = document_ingest(document.id)

    assert document.status == Document.Status.DONE and document.chunks_graphed == document.chunks_total
    reference = graph.bot()
    for chunk in extracted(str(document.id), chunk_text(ingestion.normalize(text), 300, 50)):
        write_one_chunk_at_a_time(graph, reference, chunk)
    assert contents(resolve_stack(chatbot).graph, chatbot.id) == contents(graph, reference)

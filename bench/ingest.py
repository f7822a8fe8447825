"""Ingestion end to end on real documents, against the embedder alone and against the peer (langchain-postgres).

The corpus is documentation that ships inside the packages this virtualenv installs — never downloaded at run
time: the README of each installed distribution (the long description in its METADATA: Markdown as .md,
reStructuredText / plain text as .txt) and pydoc's HTML pages of a few Django modules (their docstrings, as
.html). Files are taken in a fixed order until the corpus holds the wanted number of chunks.

WizChat = `document_add` (parse, checks, the text staged) + `document_ingest` (the Celery task's body: chunk →
embed → vector store → graph) for every file, into a fresh chatbot. Embedder alone = the same chunks through the
same LocalEmbeddings in batches of 32, nothing else. Peer = the same parse and chunking functions, then
`PGVector.add_texts` (embeds through the same LocalEmbeddings, then inserts) per file into a fresh collection.
The three run in rounds, their order rotating round by round; the median round's ratios are reported."""

from __future__ import annotations

import email
import importlib.metadata
import pydoc
import statistics
import time
import uuid

PYDOC_MODULES = ["django.db.models.query", "django.http.request", "django.forms.forms", "django.core.cache.backends.base",
                 "django.utils.text", "django.template.base", "django.db.models.fields", "django.test.client"]


def corpus(chunks_wanted: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of real documents, until their chunks reach `chunks_wanted`."""
    from chatbots.ingestion import chunk_text, document_parse

    candidates: list[tuple[str, bytes]] = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        raw = dist.read_text("METADATA")
        if not raw:
            continue
        message = email.message_from_string(raw)
        body = message.get_payload()
        if not isinstance(body, str) or len(body) < 3000:
            continue
        kind = (message.get("Description-Content-Type") or "").lower()
        suffix = ".md" if "markdown" in kind else ".txt"
        candidates.append((f"{message['Name']}-README{suffix}", body.encode()))
    pages = []
    for name in PYDOC_MODULES:
        try:
            module = __import__(name, fromlist=["_"])
        except ImportError:
            continue
        html = pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module))
        pages.append((f"{name}.html", html.encode()))
    # Interleave the kinds so that a small corpus holds all three formats.
    files, total = [], 0
    ordered = []
    for i in range(max(len(candidates), len(pages))):
        if i < len(pages):
            ordered.append(pages[i])
        if i < len(candidates):
            ordered.append(candidates[i])
    for name, data in ordered:
        try:
            _, text = document_parse(name, data)
        except Exception:  # noqa: BLE001, S112 - a README WizChat refuses (binary, too big) is not used
            continue
        n = len(chunk_text(text, 700, 100))
        if total + n > chunks_wanted * 1.15 and total >= chunks_wanted * 0.5:
            continue
        files.append((name, data))
        total += n
        if total >= chunks_wanted:
            break
    return files


def chunks_of(files) -> list[tuple[str, list[str]]]:
    from chatbots.ingestion import chunk_text, document_parse

    return [(name, chunk_text(document_parse(name, data)[1], 700, 100)) for name, data in files]


def wizchat_ingest(account, files) -> tuple[float, object]:
    """Seconds to add and ingest every file into a fresh chatbot, and the chatbot."""
    from chatbots.ingestion import document_add, document_ingest
    from chatbots.models import Chatbot, Document

    chatbot = Chatbot.objects.create(account=account, name=f"Corpus {uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    documents = [document_add(chatbot, filename=name, data=data, queue=False)[0] for name, data in files]
    for document in documents:
        document_ingest(document.id)
    elapsed = time.perf_counter() - start
    states = list(chatbot.documents.values_list("status", "error_message"))
    bad = [s for s in states if s[0] != Document.Status.DONE]
    if bad:
        raise RuntimeError(f"ingestion did not finish: {bad[:3]}")
    return elapsed, chatbot


def embedder_alone(pieces: list[str]) -> float:
    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.resolver import default_settings
    from chatbots.ingestion import EMBED_BATCH

    embedder = LocalEmbeddings(default_settings("embeddings"))
    start = time.perf_counter()
    for s in range(0, len(pieces), EMBED_BATCH):
        embedder.embed(pieces[s:s + EMBED_BATCH])
    return time.perf_counter() - start


def peer_ingest(settings, files, embeddings) -> tuple[float, str]:
    from bench import peer
    from chatbots.ingestion import chunk_text, document_parse

    name = f"bench-corpus-{uuid.uuid4().hex[:8]}"
    store = peer.store(settings, name, embeddings=embeddings)
    start = time.perf_counter()
    for filename, data in files:
        _, text = document_parse(filename, data)
        pieces = chunk_text(text, 700, 100)
        doc = uuid.uuid4().hex
        store.add_texts(pieces, metadatas=[{"title": filename, "document_id": doc} for _ in pieces],
                        ids=[f"{doc}:{i}" for i in range(len(pieces))])
    elapsed = time.perf_counter() - start
    store.session_maker.remove()
    store._engine.dispose()
    return elapsed, name


def bench_ingestion_e2e(quick: bool) -> dict:
    from bench import peer as peer_mod
    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.resolver import default_settings
    from wizchat.accounts import account_signup

    wanted = 90 if quick else 150
    rounds = 1 if quick else 3
    files = corpus(wanted)
    per_file = chunks_of(files)
    pieces = [p for _, ps in per_file for p in ps]
    kinds = sorted({name.rsplit(".", 1)[1] for name, _ in files})
    user = account_signup(email=f"ingest-{uuid.uuid4().hex[:6]}@example.com", password="correct horse battery",
                          team_name="Ingest", plan_slug="enterprise")
    account = user.membership.account
    LocalEmbeddings(default_settings("embeddings")).embed(pieces[:32])  # the ONNX session, loaded once
    why_no_peer = peer_mod.peer_available()
    settings = default_settings("vector_store")
    lc_embeddings = None if why_no_peer else peer_mod.embeddings_for_langchain()
    sides = ["embedder", "wizchat"] + ([] if why_no_peer else ["peer"])
    measured = []
    last_chatbot, last_collection = None, None
    for r in range(rounds):
        times = {}
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for side in order:
            if side == "embedder":
                times[side] = embedder_alone(pieces)
            elif side == "wizchat":
                times[side], last_chatbot = wizchat_ingest(account, files)
            else:
                times[side], last_collection = peer_ingest(settings, files, lc_embeddings)
        measured.append(times)
        print(f"  ingestion round {r + 1}: " + ", ".join(f"{k} {len(pieces) / v:.1f} chunks/s"
                                                          for k, v in times.items()), flush=True)
    vs_embedder = [m["embedder"] / m["wizchat"] for m in measured]
    out = {"files": len(files), "kinds": kinds, "chunks": len(pieces), "rounds": rounds,
           "chars": sum(len(p) for p in pieces), "bytes": sum(len(d) for _, d in files),
           "ratio_embedder": statistics.median(vs_embedder), "ratios_embedder": vs_embedder,
           "wizchat_per_s": statistics.median(len(pieces) / m["wizchat"] for m in measured),
           "embedder_per_s": statistics.median(len(pieces) / m["embedder"] for m in measured),
           "examples": [name for name, _ in files[:6]], "peer_missing": why_no_peer}
    if not why_no_peer:
        vs_peer = [m["peer"] / m["wizchat"] for m in measured]
        out.update({"ratio_peer": statistics.median(vs_peer), "ratios_peer": vs_peer,
                    "peer_per_s": statistics.median(len(pieces) / m["peer"] for m in measured)})
        out["stores"] = store_only(account, per_file, settings, rounds)
        out["retrieval"] = corpus_retrieval(last_chatbot, last_collection, per_file, settings, quick)
    return out


def store_only(account, per_file, settings, rounds: int) -> dict:
    """Both pipelines' own cost with the embedding taken out: the same vectors (computed once) handed to
    WizChat's vector store + graph writes (each in groups of up to UPSERT_MAX_CHUNKS, as the ingestion job writes
    them) and to PGVector.add_embeddings, document by document."""
    import numpy as np

    from bench import peer
    from byoi.backends.base import Chunk, GraphChunk
    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.resolver import default_settings, resolve
    from chatbots import extraction
    from chatbots.ingestion import UPSERT_MAX_CHUNKS
    from chatbots.models import Chatbot

    embedder = LocalEmbeddings(default_settings("embeddings"))
    vectors = [np.asarray(embedder.embed(ps)).tolist() for _, ps in per_file]
    total = sum(len(ps) for _, ps in per_file)
    results = []
    for r in range(rounds):
        def ours():
            """(vector store seconds, graph seconds)"""
            chatbot = Chatbot.objects.create(account=account, name=f"Store {uuid.uuid4().hex[:6]}")
            stack = resolve(chatbot)
            vector_s = graph_s = 0.0
            start = time.perf_counter()
            stack.vector_store.provision(chatbot.id, 384)
            stack.graph.provision(chatbot.id)
            graph_s += time.perf_counter() - start
            for (name, ps), vs in zip(per_file, vectors, strict=True):
                doc = uuid.uuid4().hex
                start = time.perf_counter()
                chunks = [Chunk(id=f"{doc}:{i}", document_id=doc, ordinal=i, text=p, embedding=v,
                                metadata={"title": name}) for i, (p, v) in enumerate(zip(ps, vs, strict=True))]
                for s in range(0, len(chunks), UPSERT_MAX_CHUNKS):
                    stack.vector_store.upsert(chatbot.id, chunks[s:s + UPSERT_MAX_CHUNKS])
                mid = time.perf_counter()
                found = []  # as the ingestion job writes the graph: a group of chunks per call
                for i, p in enumerate(ps):
                    entities, relations = extraction.extract_rules(p)
                    if entities:
                        found.append(GraphChunk(f"{doc}:{i}", doc, entities, relations))
                for s in range(0, len(found), UPSERT_MAX_CHUNKS):
                    stack.graph.upsert_many(chatbot.id, found[s:s + UPSERT_MAX_CHUNKS])
                vector_s += mid - start
                graph_s += time.perf_counter() - mid
            return vector_s, graph_s

        def theirs():
            store = peer.store(default_settings("vector_store"), f"bench-store-{uuid.uuid4().hex[:8]}")
            start = time.perf_counter()
            for (name, ps), vs in zip(per_file, vectors, strict=True):
                doc = uuid.uuid4().hex
                store.add_embeddings(ps, vs, metadatas=[{"title": name, "document_id": doc} for _ in ps],
                                     ids=[f"{doc}:{i}" for i in range(len(ps))])
            elapsed = time.perf_counter() - start
            store._engine.dispose()
            return elapsed

        if r % 2 == 0:
            a, b = ours(), theirs()
        else:
            b, a = theirs(), ours()
        results.append((a, b))
    vector_s = statistics.median(a[0] for a, _ in results)
    graph_s = statistics.median(a[1] for a, _ in results)
    ours_s = statistics.median(sum(a) for a, _ in results)
    theirs_s = statistics.median(b for _, b in results)
    return {"wizchat_per_s": total / ours_s, "peer_per_s": total / theirs_s, "chunks": total,
            "vector_per_s": total / vector_s, "graph_s": graph_s, "vector_s": vector_s, "peer_s": theirs_s}


def corpus_retrieval(chatbot, collection: str, per_file, settings, quick: bool) -> dict:
    """Questions drawn from the corpus (a 12-word window of a chunk), embedded once; each side searched with the
    same vectors (k=10), alternating; recall against exact search over each side's own stored vectors."""
    import random

    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from bench import peer
    from bench.retrieval import _dsn, paired
    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.backends.vector_store import PgVectorStore
    from byoi.resolver import default_settings, resolve

    rng = random.Random(5)
    pieces = [p for _, ps in per_file for p in ps]
    questions = []
    for _ in range(60 if quick else 200):
        words = rng.choice(pieces).split()
        s = rng.randrange(0, max(1, len(words) - 12))
        questions.append(" ".join(words[s:s + 12]))
    qs = np.asarray(LocalEmbeddings(default_settings("embeddings")).embed(questions), dtype=np.float32)
    with psycopg.connect(_dsn(settings)) as conn:
        register_vector(conn)
        ours_rows = conn.execute(sql.SQL("SELECT id, embedding FROM {}").format(
            sql.Identifier(PgVectorStore.table(chatbot.id)))).fetchall()
        peer_rows = conn.execute("SELECT e.id, e.embedding FROM langchain_pg_embedding e JOIN langchain_pg_collection c "
                                 "ON c.uuid = e.collection_id WHERE c.name = %s", [collection]).fetchall()

    def truth_of(rows):
        ids = [r[0] for r in rows]
        data = np.asarray([r[1].to_numpy() for r in rows], dtype=np.float32)
        top = []
        for q in qs:
            scores = data @ q
            top.append({ids[i] for i in np.argsort(-scores)[:10]})
        return top

    ours_truth, peer_truth = truth_of(ours_rows), truth_of(peer_rows)
    store = resolve(chatbot).vector_store
    theirs = peer.store(settings, collection, fresh=False)

    def ours(q):
        return [h.chunk_id for h in store.search(chatbot.id, q.tolist(), k=10)]

    result = paired(ours, lambda q: peer.ids_of(theirs, q.tolist()), list(qs), ours_truth, truth_b=peer_truth)
    theirs._engine.dispose()
    return {**result, "chunks": len(pieces), "questions": len(questions),
            "p50_ratio": result["peer"]["p50"] / result["wizchat"]["p50"]}

"""How retrieval cost grows: p50/p95 and recall@10 (against exact search over the same stored vectors) at growing
numbers of chunks, through `PgVectorStore.search` — the backend's own table, HNSW index and session settings.

Each size is loaded once with a binary COPY into the table `PgVectorStore.provision` made, with its index dropped
first and built once afterwards with the backend's own definition (what a migration of existing chunks does;
inserting row by row into a live HNSW index costs several times more). The build time is reported.
At 100k × 384 the peer (langchain-postgres' PGVector, bench/peer.py) is queried on the same vectors."""

from __future__ import annotations

import math
import statistics
import time
import uuid

SIZES_FULL = [(10_000, 384), (100_000, 384), (300_000, 384), (30_000, 3072)]
SIZES_QUICK = [(5_000, 384), (20_000, 384), (5_000, 3072)]
PEER_SIZE = (100_000, 384)


def clustered(n: int, queries: int, dims: int, seed: int = 11):
    """Unit vectors around n/200 topic centres (like sentence embeddings of a corpus on many topics), and
    queries drawn the same way."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(50, n // 200), dims)).astype(np.float32)

    def sample(count):
        picks = rng.integers(0, len(centers), size=count)
        points = centers[picks] + rng.normal(scale=0.6, size=(count, dims)).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    return sample(n), sample(queries)


def exact_top(data, queries, k: int = 10):
    """The exact k nearest (cosine) row numbers of each query, in blocks to bound memory."""
    import numpy as np

    out = []
    for s in range(0, len(queries), 64):
        scores = queries[s:s + 64] @ data.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        out.extend(set(row.tolist()) for row in top)
    return out


def _dsn(settings: dict) -> str:
    return (f"host={settings['host']} port={settings['port']} dbname={settings['database']} "
            f"user={settings['username']} password={settings['password']}")


def load(store, settings: dict, data, dims: int) -> dict:
    """A fresh chatbot table holding `data`, its HNSW index built once. Returns the chatbot id and timings."""
    import psycopg
    from pgvector import HalfVector, Vector
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from byoi.backends.vector_store import PgVectorStore, column_type

    chatbot = uuid.uuid4()
    store.provision(chatbot, dims)
    table = PgVectorStore.table(chatbot)
    kind = column_type(dims)
    value = HalfVector if kind == "halfvec" else Vector
    start = time.perf_counter()
    with psycopg.connect(_dsn(settings), autocommit=True) as conn:
        register_vector(conn)
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"{table}_hnsw"]).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{table}_hnsw")))
        with conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY {} (id, document_id, ordinal, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ).format(sql.Identifier(table))) as copy:
            copy.set_types(["text", "text", "int4", "text", "jsonb", kind])
            empty = Jsonb({})
            for i in range(len(data)):
                copy.write_row((f"d:{i}", "d", i, f"chunk {i}", empty, value(data[i])))
        loaded = time.perf_counter()
        # Enough memory for the graph to be built in memory (else the build spills and takes several times
        # longer), and both cores.
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute(index)
        built = time.perf_counter()
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        sizes = conn.execute("SELECT pg_relation_size(%s), pg_total_relation_size(%s), "
                             "current_setting('shared_buffers')",
                             [f"{table}_hnsw", table]).fetchone()
    return {"chatbot": chatbot, "copy_s": loaded - start, "build_s": built - loaded, "index_mb": sizes[0] / 2**20,
            "table_mb": sizes[1] / 2**20, "shared_buffers": sizes[2], "definition": index}


def measure(search, queries, truth, k: int = 10, warm: int = 30) -> dict:
    """p50/p95 latency and mean recall@k of `search(vector) -> row numbers` over the queries."""
    for q in queries[:warm]:  # the pool's connection, the index's upper layers
        search(q)
    latencies, recalls = [], []
    for q, exact in zip(queries, truth, strict=True):
        t = time.perf_counter()
        got = search(q)
        latencies.append(time.perf_counter() - t)
        recalls.append(len(exact & set(got)) / k)
    from bench.run import pct

    return {"p50": pct(latencies, 50) * 1000, "p95": pct(latencies, 95) * 1000,
            "recall": statistics.mean(recalls), "queries": len(queries)}


def exact_scan_p50(settings: dict, chatbot, queries, dims: int) -> float:
    """The baseline: the same k-NN query with index scans off (PostgreSQL scans the table), p50 in ms."""
    import psycopg
    from pgvector import HalfVector, Vector
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from bench.run import pct
    from byoi.backends.vector_store import PgVectorStore, column_type

    value = HalfVector if column_type(dims) == "halfvec" else Vector
    query = sql.SQL("SELECT id, document_id, text, metadata, embedding <=> %s AS distance FROM {} "
                    "ORDER BY embedding <=> %s LIMIT 10").format(sql.Identifier(PgVectorStore.table(chatbot)))
    times = []
    with psycopg.connect(_dsn(settings), autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET enable_indexscan = off")
        for i, q in enumerate(queries):
            v = value(q)
            t = time.perf_counter()
            conn.execute(query, [v, v]).fetchall()
            if i:  # the first one reads the table into the cache
                times.append(time.perf_counter() - t)
    return pct(times, 50) * 1000


def buffers_per_search(settings: dict, chatbot, queries, dims: int) -> dict:
    """Shared buffers one indexed search touches (EXPLAIN ANALYZE BUFFERS, ef_search as the backend sets it):
    `hit` were in PostgreSQL's shared_buffers, `read` came from the OS (page cache or disk). Medians."""
    import re

    import psycopg
    from pgvector import HalfVector, Vector
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from byoi.backends.vector_store import EF_SEARCH, PgVectorStore, column_type

    value = HalfVector if column_type(dims) == "halfvec" else Vector
    query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) SELECT id, document_id, text, metadata, "
                    "embedding <=> %s AS distance FROM {} ORDER BY embedding <=> %s LIMIT 10").format(
        sql.Identifier(PgVectorStore.table(chatbot)))
    hits, reads = [], []
    with psycopg.connect(_dsn(settings), autocommit=True) as conn:
        register_vector(conn)
        conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(EF_SEARCH)))
        for q in queries:
            v = value(q)
            plan = "\n".join(r[0] for r in conn.execute(query, [v, v]).fetchall())
            found = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", plan)
            hits.append(int(found.group(1) or 0) if found else 0)
            reads.append(int(found.group(2) or 0) if found else 0)
    return {"hit": statistics.median(hits), "read": statistics.median(reads)}


def paired(a, b, queries, truth, k: int = 10, warm: int = 20, truth_b=None) -> dict:
    """measure() of two searches over the same queries, alternating which goes first query by query (the machine
    is shared: both sides see the same minute's noise). `truth_b`: b's own exact answers when its ids differ.
    Returns {"wizchat": a's, "peer": b's}."""
    from bench.run import pct

    for q in queries[:warm]:
        a(q)
        b(q)
    lat: dict[str, list] = {"a": [], "b": []}
    rec: dict[str, list] = {"a": [], "b": []}
    truths = {"a": truth, "b": truth_b or truth}
    for i, q in enumerate(queries):
        for side, fn in ((("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))):
            t = time.perf_counter()
            got = fn(q)
            lat[side].append(time.perf_counter() - t)
            rec[side].append(len(truths[side][i] & set(got)) / k)

    def stats(side):
        return {"p50": pct(lat[side], 50) * 1000, "p95": pct(lat[side], 95) * 1000,
                "recall": statistics.mean(rec[side]), "queries": len(queries)}

    return {"wizchat": stats("a"), "peer": stats("b")}


def bench_scale(quick: bool, with_peer: bool = True) -> dict:
    import numpy as np

    from byoi.backends.vector_store import EF_SEARCH, PgVectorStore
    from byoi.resolver import default_settings

    settings = default_settings("vector_store")
    store = PgVectorStore(settings)
    results = []
    peer = None
    queries_n = 100 if quick else 300
    sizes = SIZES_QUICK if quick else SIZES_FULL
    try:
        for n, dims in sizes:
            started = time.perf_counter()
            data, qs = clustered(n, queries_n + 5, dims)
            qs, fresh = qs[:queries_n], qs[queries_n:]  # `fresh`: never searched before, for the buffer counts
            if dims > 2000:  # stored as halfvec: the exact answer is over the half-precision values stored
                data = data.astype(np.float16).astype(np.float32)
            truth = exact_top(data, qs)
            loaded = load(store, settings, data, dims)
            chatbot = loaded.pop("chatbot")

            def ours(q, chatbot=chatbot):
                return [int(h.chunk_id[2:]) for h in store.search(chatbot, q.tolist(), k=10)]

            row = {"n": n, "dims": dims, **loaded, **measure(ours, qs, truth)}
            row["exact_p50"] = exact_scan_p50(settings, chatbot, qs[:10 if n > 50_000 else 20], dims)
            row["buffers"] = buffers_per_search(settings, chatbot, fresh, dims)
            if with_peer and (n, dims) == (PEER_SIZE if not quick else (20_000, 384)):
                from bench.peer import retrieval_at_scale

                peer = retrieval_at_scale(settings, data, qs, truth, ours)
            with_pool_closed = time.perf_counter() - started
            row["section_s"] = with_pool_closed
            results.append(row)
            print(f"  retrieval {n:,} × {dims}: p50 {row['p50']:.2f} ms, recall {row['recall']:.3f}, "
                  f"build {row['build_s']:.0f} s", flush=True)
    finally:
        store.close()
    small = [r for r in results if r["dims"] == 384]
    growth = None
    if len(small) >= 2:  # least-squares slope of log10(p50) against log10(n): the factor per tenfold
        xs = [math.log10(r["n"]) for r in small]
        ys = [math.log10(r["p50"]) for r in small]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        growth = 10 ** slope
    return {"sizes": results, "growth_per_tenfold": growth, "ef_search": EF_SEARCH, "peer": peer}

"""`make bench`: WizChat's performance targets, measured as ratios/differences within one run.

Starts its own embedded PostgreSQL + pgvector and FalkorDB in a temporary folder, and an OpenAI-protocol
server (tests/openai_server.py, deterministic and fast, so that the LLM's own time does not drown the
overhead being measured). Writes docs/BENCHMARKS.md.

  python -m bench.run [--quick]   (--quick: fewer iterations and 20k instead of 100k vectors)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    i = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[i]


def ms(seconds: float) -> float:
    return seconds * 1000


class Env:
    """Embedded servers in a temp dir and Django configured against them."""

    def __init__(self):
        from wizchat import embedded

        self.root = Path(tempfile.mkdtemp(prefix="wizchat-bench-"))
        self.pg = embedded.EmbeddedPostgres(self.root / "pg", embedded.free_port(), embedded.new_password())
        self.falkor = embedded.EmbeddedFalkor(self.root / "falkor", embedded.free_port(), embedded.new_password())

    def start(self, llm_url: str, llm_key: str):
        self.pg.start()
        self.pg.ensure_database("wizchat")
        self.falkor.start()
        os.environ.update({
            "WIZCHAT_STATE_DIR": str(self.root / "state"), "WIZCHAT_IGNORE_RUNTIME_ENV": "true",
            "DATABASE_URL": self.pg.url("wizchat"), "FALKORDB_URL": self.falkor.url(0),
            "CELERY_BROKER_URL": self.falkor.url(1), "EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8",
            "DEFAULT_LLM_ENDPOINT": llm_url, "DEFAULT_LLM_API_KEY": llm_key, "DEFAULT_LLM_MODEL": "gpt-4o-mini",
            "DJANGO_SETTINGS_MODULE": "wizchat.settings", "LOG_LEVEL": "WARNING",
        })
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def stop(self):
        from byoi.resolver import clear_cache

        clear_cache()
        self.falkor.stop()
        self.pg.discard()  # as root its data may be kept outside self.root (wizchat/embedded.py PG_HOME)
        shutil.rmtree(self.root, ignore_errors=True)


# -- chat overhead -----------------------------------------------------------------------------------------

def bench_chat(server, iterations: int) -> dict:
    import openai
    from django.test import Client

    from chatbots.demo import SAMPLE_QUESTION, demo_seed_chatbot
    from wizchat.accounts import account_signup

    user = account_signup(email=f"bench-{uuid.uuid4().hex[:6]}@example.com", password="correct horse battery",
                          team_name="Bench", plan_slug="enterprise")
    chatbot = demo_seed_chatbot(user.membership.account)
    client = Client()
    client.force_login(user)
    url = f"/dashboard/chatbots/{chatbot.id}/chat/"
    direct = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)

    def wizchat_once() -> tuple[float, float, float]:
        """(first token, answer complete = sources shown, stream end = messages stored) in seconds."""
        start = time.perf_counter()
        first = answered = None
        response = client.post(url, {"question": SAMPLE_QUESTION}, HTTP_ACCEPT="text/event-stream")
        for part in response.streaming_content:
            if first is None and b"event: token" in part:
                first = time.perf_counter()
            if answered is None and b"event: sources" in part:
                answered = time.perf_counter()
        end = time.perf_counter()
        return (first or end) - start, (answered or end) - start, end - start

    def direct_once(body: dict) -> tuple[float, float]:
        start = time.perf_counter()
        first = None
        stream = direct.chat.completions.create(model=body["model"], messages=body["messages"],
                                                max_tokens=body.get("max_tokens"), temperature=body["temperature"],
                                                stream=True)
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
        end = time.perf_counter()
        return (first or end) - start, end - start

    for _ in range(10):  # warm pools, the ONNX session, the HTTP clients
        wizchat_once()
    body = server.calls("/chat/completions")[-1].body  # the exact prompt WizChat sends
    for _ in range(5):
        direct_once(body)
    total_over, answer_over, ttft_over, wiz_total, direct_total = [], [], [], [], []
    for _ in range(iterations):
        w_first, w_answer, w_total = wizchat_once()
        d_first, d_total = direct_once(body)
        total_over.append(w_total - d_total)
        answer_over.append(w_answer - d_total)
        ttft_over.append(w_first - d_first)
        wiz_total.append(w_total)
        direct_total.append(d_total)
    return {
        "stages": chat_stages(chatbot, user, SAMPLE_QUESTION, max(20, iterations // 4)),
        "iterations": iterations,
        "overhead_p50": ms(pct(total_over, 50)), "overhead_p95": ms(pct(total_over, 95)),
        "answer_overhead_p50": ms(pct(answer_over, 50)), "answer_overhead_p95": ms(pct(answer_over, 95)),
        "ttft_overhead_p50": ms(pct(ttft_over, 50)), "ttft_overhead_p95": ms(pct(ttft_over, 95)),
        "wizchat_p50": ms(pct(wiz_total, 50)), "direct_p50": ms(pct(direct_total, 50)),
        "chunks": chatbot.documents.get().chunks_total,
    }


def chat_stages(chatbot, user, question: str, n: int) -> list[tuple[str, float]]:
    """p50 of each step of the chat path on its own, to show where the overhead goes."""
    import byoi
    from chatbots import extraction
    from chatbots.services import chatbot_get_for_user
    from conversations import services as conversations

    stack = byoi.resolve(chatbot)
    vector = stack.embeddings.embed([question])[0]
    hits = stack.vector_store.search(chatbot.id, vector, k=4)
    names = extraction.mentioned_entities(question)
    for hit in hits:
        names += [m for m in extraction.mentioned_entities(hit.text) if m not in names]
    steps = [
        ("chatbot lookup (account-scoped, 1 query)", lambda: chatbot_get_for_user(user, chatbot.id)),
        ("message quota (1 conditional UPDATE, no wait for the disk flush)", lambda: conversations.message_quota_use(chatbot.account)),
        ("byoi.resolve", lambda: byoi.resolve(chatbot)),
        ("documents of the chatbot (1 query)",
         lambda: list(chatbot.documents.values_list("id", "title", "chunks_embedded", "chunks_graphed"))),
        ("embed the question (default MiniLM, in-process)", lambda: stack.embeddings.embed([question])),
        ("k-NN search in pgvector (k=4)", lambda: stack.vector_store.search(chatbot.id, vector, k=4)),
        ("entity names in question + chunks", lambda: [extraction.mentioned_entities(h.text) for h in hits]),
        ("graph neighbourhood in FalkorDB", lambda: stack.graph.neighbourhood(chatbot.id, names[:20], limit=15)),
        ("store question + answer (outbox check + 2 appends)", lambda: conversations.conversation_append(
            chatbot, conversations.message_new("bench", "user", question),
            conversations.message_new("bench", "assistant", "answer"), stack=stack)),
    ]
    out = []
    for label, step in steps:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        out.append((label, ms(pct(times, 50))))
    return out


# -- ingestion vs raw COPY ---------------------------------------------------------------------------------

def bench_ingestion(n: int, rounds: int = 3) -> dict:
    """`rounds` rounds of n chunks each, into fresh tables, the order of the two sides alternating round by round
    (the disk and the HNSW inserts vary from one minute to the next); the figure is the median round's ratio."""
    import numpy as np
    import psycopg
    from pgvector import Vector
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from byoi.backends.base import Chunk
    from byoi.backends.vector_store import PgVectorStore
    from byoi.resolver import default_settings
    from chatbots.ingestion import UPSERT_MAX_CHUNKS

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    text = "WizChat ingests documents into the customer's pgvector. " * 8
    doc = str(uuid.uuid4())
    settings = default_settings("vector_store")
    store = PgVectorStore(settings)
    dsn = (f"host={settings['host']} port={settings['port']} dbname={settings['database']} "
           f"user={settings['username']} password={settings['password']}")
    chunks = [Chunk(id=f"{doc}:{i}", document_id=doc, ordinal=i, text=text, embedding=vectors[i].tolist(),
                    metadata={"title": "Bench"}) for i in range(n)]
    rows = [(f"{doc}:{i}", doc, i, text, Jsonb({"title": "Bench"}), Vector(vectors[i])) for i in range(n)]

    def ours() -> float:
        chatbot = uuid.uuid4()
        store.provision(chatbot, 384)
        start = time.perf_counter()
        for s in range(0, n, UPSERT_MAX_CHUNKS):  # as the ingestion job writes when embedding keeps up
            store.upsert(chatbot, chunks[s:s + UPSERT_MAX_CHUNKS])
        return time.perf_counter() - start

    def raw() -> float:
        chatbot = uuid.uuid4()
        store.provision(chatbot, 384)  # the same table definition (columns + HNSW index) for the raw COPY
        with psycopg.connect(dsn) as conn:
            register_vector(conn)
            start = time.perf_counter()
            with conn.cursor() as cur, cur.copy(sql.SQL(
                    "COPY {} (id, document_id, ordinal, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ).format(sql.Identifier(PgVectorStore.table(chatbot)))) as copy:
                copy.set_types(["text", "text", "int4", "text", "jsonb", "vector"])
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            return time.perf_counter() - start

    measured = []
    for round_ in range(rounds):
        if round_ % 2:
            raw_s, ours_s = raw(), ours()
        else:
            ours_s, raw_s = ours(), raw()
        measured.append((raw_s / ours_s, n / ours_s, n / raw_s))
    store.close()
    measured.sort()
    ratio, ours_per_s, raw_per_s = measured[len(measured) // 2]
    return {"n": n, "rounds": rounds, "batch": UPSERT_MAX_CHUNKS, "ours_per_s": ours_per_s, "raw_per_s": raw_per_s,
            "ratio": ratio, "ratios": [m[0] for m in measured]}


# -- retrieval at scale ------------------------------------------------------------------------------------

def bench_retrieval(n: int, queries: int) -> dict:
    import numpy as np
    import psycopg
    from pgvector import Vector
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from byoi.backends.vector_store import PgVectorStore
    from byoi.resolver import default_settings

    # Clustered unit vectors, like sentence embeddings of a corpus on a few hundred topics.
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(max(50, n // 200), 384)).astype(np.float32)

    def sample(count):
        picks = rng.integers(0, len(centers), size=count)
        points = centers[picks] + rng.normal(scale=0.6, size=(count, 384)).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    data, qs = sample(n), sample(queries)
    settings = default_settings("vector_store")
    store = PgVectorStore(settings)
    chatbot = uuid.uuid4()
    store.provision(chatbot, 384)
    table = PgVectorStore.table(chatbot)
    dsn = (f"host={settings['host']} port={settings['port']} dbname={settings['database']} "
           f"user={settings['username']} password={settings['password']}")
    start = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        # Bulk load without the index, then build it once (what a migration of 100k chunks would do);
        # the index definition is the backend's own.
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"{table}_hnsw"]).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(f"{table}_hnsw")))
        with conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY {} (id, document_id, ordinal, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ).format(sql.Identifier(table))) as copy:
            copy.set_types(["text", "text", "int4", "text", "jsonb", "vector"])
            for i in range(n):
                copy.write_row((f"d:{i}", "d", i, f"chunk {i}", Jsonb({}), Vector(data[i])))
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        build = time.perf_counter()
        conn.execute(index)
        build_s = time.perf_counter() - build
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    load_s = time.perf_counter() - start
    for q in qs[:20]:  # warm the pool and the index pages
        store.search(chatbot, q.tolist(), k=10)
    latencies, recalls = [], []
    for q in qs:
        t = time.perf_counter()
        hits = store.search(chatbot, q.tolist(), k=10)
        latencies.append(time.perf_counter() - t)
        exact = set(np.argsort(-(data @ q))[:10].tolist())
        got = {int(h.chunk_id.split(":")[1]) for h in hits}
        recalls.append(len(exact & got) / 10)
    store.close()
    return {"n": n, "queries": queries, "p50": ms(pct(latencies, 50)), "p95": ms(pct(latencies, 95)),
            "recall": statistics.mean(recalls), "build_s": build_s, "load_s": load_s}


# -- embedder throughput -----------------------------------------------------------------------------------

def bench_embedder(count: int) -> dict:
    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.resolver import default_settings
    from chatbots.demo import SAMPLE_DOCUMENT
    from chatbots.ingestion import EMBED_BATCH, chunk_text

    pieces = chunk_text(SAMPLE_DOCUMENT * 20, 700, 100)  # the default chunk settings
    pieces = (pieces * (count // len(pieces) + 1))[:count]
    embedder = LocalEmbeddings(default_settings("embeddings"))
    embedder.embed(pieces[:EMBED_BATCH])  # load the ONNX session
    start = time.perf_counter()
    for s in range(0, count, EMBED_BATCH):
        embedder.embed(pieces[s:s + EMBED_BATCH])
    elapsed = time.perf_counter() - start
    return {"chunks": count, "per_s": count / elapsed, "chars": statistics.mean(len(p) for p in pieces)}


# -- Test Connection (bench/connection_tests.py) --------------------------------------------------------------

def bench_connection_tests(env: Env, server, quick: bool) -> dict:
    """Failure report times and success cost of Test Connection, on this run's PostgreSQL, FalkorDB and
    OpenAI-protocol server (plus the TLS, silent and closed-port peers connection_tests starts itself)."""
    from bench.connection_tests import Peers, bench

    peers = Peers(pg=env.pg, falkor=env.falkor, server=server)
    try:
        peers.start()
        return bench(peers, quick)
    finally:
        peers.stop()


# -- serving (bench/serving.py) ------------------------------------------------------------------------------

def bench_serving(server, env: Env, quick: bool) -> dict:
    from bench.serving import bench_serving as run

    return run(server, env, quick)


# -- report ------------------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(results: dict, quick: bool) -> str:
    c, i, r, e = results["chat"], results["ingestion"], results["retrieval"], results["embedder"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` (`python -m bench.run{' --quick' if quick else ''}`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs "
        f"(shared with other work while it ran: load average {results['load']}), Python "
        + platform.python_version() + ". "
        "Every figure is a ratio or a difference between two measurements taken in the same run, "
        "against embedded PostgreSQL 18 + pgvector and FalkorDB on loopback.",
        "",
        "| Target | Goal | Measured | |",
        "|---|---|---|---|",
        f"| Chat overhead p50 (WizChat end-to-end − direct call, same prompt; to the end of the stream, "
        f"messages stored) | ≤ 20 ms | {c['overhead_p50']:.1f} ms | {verdict(c['overhead_p50'] <= 20)} |",
        f"| Chat overhead p95 (same) | ≤ 50 ms | {c['overhead_p95']:.1f} ms | {verdict(c['overhead_p95'] <= 50)} |",
        f"| Chat overhead until the answer is complete on screen (sources event), p50 / p95 | ≤ 20 / 50 ms | "
        f"{c['answer_overhead_p50']:.1f} / {c['answer_overhead_p95']:.1f} ms | "
        f"{verdict(c['answer_overhead_p50'] <= 20 and c['answer_overhead_p95'] <= 50)} |",
        f"| Streaming time-to-first-token overhead p50 | ≤ 30 ms | {c['ttft_overhead_p50']:.1f} ms | "
        f"{verdict(c['ttft_overhead_p50'] <= 30)} |",
        f"| Ingestion into pgvector vs raw psycopg COPY | ≥ 0.8× | {i['ratio']:.2f}× | {verdict(i['ratio'] >= 0.8)} |",
        f"| Retrieval p50 at {r['n']:,} × 384 (HNSW) | ≤ 5 ms | {r['p50']:.2f} ms | {verdict(r['p50'] <= 5)} |",
        f"| Retrieval recall@10 vs exact search | ≥ 0.95 | {r['recall']:.3f} | {verdict(r['recall'] >= 0.95)} |",
        f"| Default embedder (MiniLM-L6 int8 ONNX) | reported | {e['per_s']:.1f} chunks/s | |",
        "",
        "## Details",
        f"- **Chat** ({c['iterations']} interleaved pairs after warm-up): WizChat = POST to the chat view with "
        "`Accept: text/event-stream` through Django's test client (session auth, quota, `byoi.resolve`, question "
        "embedding with the default MiniLM, k-NN in pgvector, graph neighbourhood in FalkorDB, prompt, streamed "
        "LLM call, both messages stored in the conversations table — the question embedded beside the platform "
        "queries and stored while the answer streams), read to the end; direct = the OpenAI SDK "
        "streaming the exact same request body to the same endpoint. The endpoint is the OpenAI-protocol test "
        f"server, so both sides pay the same small LLM time. p50 end-to-end: WizChat {c['wizchat_p50']:.1f} ms, "
        f"direct {c['direct_p50']:.1f} ms; TTFT overhead p95 {c['ttft_overhead_p95']:.1f} ms. The demo chatbot's "
        f"sample document ({c['chunks']} chunks) is the knowledge.",
        "- **Where the chat overhead goes** (p50 of each step run alone, same run): "
        + "; ".join(f"{label} {value:.1f} ms" for label, value in c["stages"]) + ".",
        f"- **Ingestion** ({i['rounds']} rounds, fresh tables each round, the order of the two sides alternating; "
        f"the median round is reported, all rounds' ratios: {', '.join(f'{x:.2f}×' for x in i['ratios'])}): "
        f"{i['n']:,} chunks of 384-dim vectors upserted through `PgVectorStore.upsert` in batches "
        f"of {i['batch']} (as the ingestion job writes them when the embedder keeps up; a slow embedder's chunks "
        f"are written every second) into the chatbot's table "
        f"with its HNSW index: {i['ours_per_s']:,.0f} chunks/s; one raw psycopg binary COPY of the same rows into "
        f"an identical table: {i['raw_per_s']:,.0f} chunks/s.",
        f"- **Retrieval**: {r['n']:,} clustered unit vectors (384 dims) loaded by COPY, then the backend's HNSW "
        f"index (cosine, pgvector defaults m=16, ef_construction=64) built once in {r['build_s']:.0f} s; "
        f"{r['queries']} queries through `PgVectorStore.search(k=10)` (ef_search=100, pooled connection): "
        f"p50 {r['p50']:.2f} ms, p95 {r['p95']:.2f} ms; recall@10 against exact (numpy) cosine search.",
        f"- **Embedder**: {e['chunks']} chunks of about {e['chars']:.0f} characters, batches of 32, in-process "
        "ONNX Runtime on CPU.",
        "",
    ]
    if "serving" in results:
        from bench.serving import report_lines as serving_lines

        lines += serving_lines(results["serving"])
    if "connection_tests" in results:
        from bench.connection_tests import report_lines

        lines += report_lines(results["connection_tests"])
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations, 20k vectors for retrieval")
    parser.add_argument("--output", default=str(BASE / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--only", choices=["chat", "ingestion", "embedder", "retrieval", "connection_tests",
                                           "serving"],
                        help="run one benchmark and print it (no report is written)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BASE))
    from tests.openai_server import OpenAIServer

    server = OpenAIServer().start()
    env = Env()
    try:
        env.start(server.base_url, server.api_key)
        results = {}
        if args.only:
            runners = {"chat": lambda: bench_chat(server, 40 if args.quick else 200),
                       "ingestion": lambda: bench_ingestion(3_000 if args.quick else 10_000),
                       "embedder": lambda: bench_embedder(128 if args.quick else 512),
                       "retrieval": lambda: bench_retrieval(20_000 if args.quick else 100_000, 100),
                       "connection_tests": lambda: bench_connection_tests(env, server, args.quick),
                       "serving": lambda: bench_serving(server, env, args.quick)}
            print(runners[args.only](), flush=True)
            return 0
        print("Chat overhead…", flush=True)
        results["chat"] = bench_chat(server, 40 if args.quick else 200)
        print(results["chat"], flush=True)
        print("Ingestion vs COPY…", flush=True)
        results["ingestion"] = bench_ingestion(3_000 if args.quick else 10_000)
        print(results["ingestion"], flush=True)
        print("Default embedder…", flush=True)
        results["embedder"] = bench_embedder(128 if args.quick else 512)
        print(results["embedder"], flush=True)
        print("Retrieval at scale (loading and indexing)…", flush=True)
        results["retrieval"] = bench_retrieval(20_000 if args.quick else 100_000, 100 if args.quick else 300)
        print(results["retrieval"], flush=True)
        results["connection_tests"] = bench_connection_tests(env, server, args.quick)
        print("Serving: public API, deployed runtime, redeploy under load…", flush=True)
        results["serving"] = bench_serving(server, env, args.quick)
        print(results["serving"], flush=True)
        results["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min, at the end)"
    finally:
        env.stop()
        server.stop()
    text = report(results, args.quick)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

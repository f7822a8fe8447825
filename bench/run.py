"""`make bench`: WizChat's performance targets, each measured against a baseline taken in the same run.

Starts its own embedded PostgreSQL + pgvector and FalkorDB in a temporary folder, and an OpenAI-protocol
server (tests/openai_server.py, deterministic and fast, so that the LLM's own time does not drown the
overhead being measured). Sections (each its own module):

  serving      the public API and the dashboard chat through gunicorn, and a deployed runtime (bench/serving.py)
  chat         the chat path in-process: where the overhead goes, step by step (and the test-client floor)
  scale        retrieval at 10k/100k/300k × 384 and 30k × 3072, and the peer at 100k (bench/retrieval.py)
  ingestion    real documents end to end vs the embedder alone and vs the peer (bench/ingest.py)
  store        PgVectorStore.upsert vs a raw COPY (the previous round's floor)
  memory       `make run` idle with 0, 1 and 5 deployed runtimes (bench/memory.py)
  connection_tests   Test Connection's failure times and cost (bench/connection_tests.py)

  python -m bench.run [--quick] [--only SECTION]   (--only prints its figures and writes no report)
Writes docs/BENCHMARKS.md (bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
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
        ("store the answer (outbox check + 1 append, after the stream; the question is stored beside the stream)",
         lambda: conversations.conversation_append(
             chatbot, conversations.message_new("bench", "assistant", "answer"), stack=stack)),
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


SECTIONS = ["serving", "chat", "scale", "ingestion", "store", "memory", "connection_tests"]


def run_section(name: str, server, env: Env, quick: bool) -> dict:
    if name == "serving":
        from bench.serving import bench_serving

        return bench_serving(server, env, quick)
    if name == "chat":
        return bench_chat(server, 40 if quick else 150)
    if name == "scale":
        from bench.retrieval import bench_scale

        return bench_scale(quick)
    if name == "ingestion":
        from bench.ingest import bench_ingestion_e2e

        return bench_ingestion_e2e(quick)
    if name == "store":
        return bench_ingestion(2_000 if quick else 5_000, rounds=1 if quick else 3)
    if name == "memory":
        from bench.memory import bench_make_run

        return bench_make_run(server, quick)
    if name == "connection_tests":
        return bench_connection_tests(env, server, quick)
    raise ValueError(name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations, smaller sizes (development)")
    parser.add_argument("--output", default=str(BASE / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--only", choices=SECTIONS, help="run one section and print it (no report is written)")
    parser.add_argument("--render", metavar="RESULTS_JSON", help="write the report from a saved run's results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BASE))
    saved = Path(tempfile.gettempdir()) / "wizchat-bench-results.json"
    if args.render:
        return _write_report(json.loads(Path(args.render).read_text()), args.quick, args.output)
    from tests.openai_server import OpenAIServer

    started = time.perf_counter()
    results_start_load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    server = OpenAIServer().start()
    env = Env()
    results: dict = {"durations": {}, "load_start": results_start_load}
    try:
        env.start(server.base_url, server.api_key)
        for name in [args.only] if args.only else SECTIONS:
            t = time.perf_counter()
            print(f"== {name}…", flush=True)
            server.requests.clear()
            results[name] = run_section(name, server, env, args.quick)
            results["durations"][name] = time.perf_counter() - t
            print(f"== {name}: {results['durations'][name]:.0f} s", flush=True)
            if args.only:
                print(json.dumps(results[name], indent=1, default=str), flush=True)
        results["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    finally:
        env.stop()
        server.stop()
    results["total_s"] = time.perf_counter() - started
    results["finished"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    if args.only:
        return 0
    saved.write_text(json.dumps(results, default=str))  # `--render` writes the report again from it
    print(f"Whole run: {results['total_s'] / 60:.1f} min (results kept in {saved})", flush=True)
    return _write_report(results, args.quick, args.output)


# Sections of docs/BENCHMARKS.md measured elsewhere (issue 16's load tests, tests/test_load_*.py): a new run's
# report keeps them as they are, at its end.
KEPT_SECTIONS = ("## Load: 20 concurrent streams for 60 s",)


def _kept_sections(output: str) -> str:
    try:
        old = Path(output).read_text()
    except OSError:
        return ""
    kept = []
    for title in KEPT_SECTIONS:
        start = old.find(f"\n{title}\n")
        if start >= 0:
            end = old.find("\n## ", start + 1)
            kept.append(old[start + 1:end if end >= 0 else None].rstrip("\n"))
    return "".join(f"\n\n{section}" for section in kept)


def _write_report(results: dict, quick: bool, output: str) -> int:
    from bench.report import report

    text = report(results, quick).rstrip("\n") + _kept_sections(output) + "\n"
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

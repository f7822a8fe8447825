"""The bounded load of issue 16, shared by tests/test_load_*.py (one file per target, so that pytest-xdist's
`--dist loadfile` puts them on different processes).

20 clients stream back to back for WIZCHAT_LOAD_SECONDS (default 60) through a production server — gunicorn as
`make run` starts it (wizchat.run.web_server_command), or a deployed runtime behind the supervisor `make run`
runs — on the default stack, with the OpenAI-protocol test server standing in for the LLM (20 words, one every
50 ms: a fast real LLM, as in the serving benchmark). The clients run in a process of their own (bench/load.py,
mode "exchanges"), each stopping by itself at the deadline. Every question carries a marker of its own; afterwards
the conversations store is read back and every exchange must have left exactly its question and its answer.
Speed is reported (p50/p95 of time to first token and of the whole exchange), never asserted."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from django.conf import settings

from bench.serving import LOAD_REPLY_WORDS, LOAD_WORD_DELAY, run_load, wait_http
from tests.peers import PEERS
from wizchat import embedded

BASE = Path(__file__).resolve().parent.parent
CLIENTS = 20
SECONDS = float(os.environ.get("WIZCHAT_LOAD_SECONDS", "60"))
MIN_EXCHANGES = CLIENTS  # at least one exchange per client: proof that the load happened
# Its own words: the load's chatbots are on WizChat's defaults, whose chunk tables outlive a test's flush, and
# test_data_residency searches the platform database for its own marker word.
TEXT = ("The Loadstone Handbook says every answer is stored once, in order, in the conversations store. "
        "Acme Corporation runs the Loadstone Handbook on Kubernetes.\n\n") * 6
QUESTION = "What does the Loadstone Handbook say about answers? (load {marker})"
PASSWORD = "correct horse battery"  # make_user's
# The API's rate limit stays on (counted in the Redis the platform runs, as in production), set above what 20
# back-to-back clients send from one address with one key in a minute: the load must not be refused by design.
RATE_LIMIT = 100_000


def fast_llm(server, settings) -> None:
    """The test server answers like a fast real LLM and is the default LLM of this process and its children."""
    server.reply = " ".join(f"word{i}" for i in range(LOAD_REPLY_WORDS))
    server.word_delay = LOAD_WORD_DELAY
    settings.DEFAULT_LLM_ENDPOINT = server.base_url
    settings.DEFAULT_LLM_API_KEY = server.api_key
    settings.DEFAULT_LLM_MODEL = "gpt-4o-mini"
    settings.API_RATE_LIMIT_PER_MINUTE = RATE_LIMIT


def loaded_chatbot(make_user):
    """An Enterprise account's chatbot on the default stack with one ingested document (so that every question
    runs the whole retrieval: embeddings, vector search, graph)."""
    from chatbots.ingestion import document_add, document_ingest
    from chatbots.services import chatbot_create

    user = make_user(plan="enterprise", team_name="Load")
    chatbot = chatbot_create(user.membership.account, name="Load bot", instructions="Be brief.")
    document, _ = document_add(chatbot, title="Handbook", text=TEXT, queue=False)
    document_ingest(document.id)
    return user, chatbot


def server_env(server) -> dict:
    """The environment of the production server and of the supervisor: this session's peers, the test database
    (the tests using it are transactional, so what they write is visible), the test LLM."""
    env = dict(os.environ)
    env.update(DATABASE_URL=PEERS.platform_pg.url(settings.DATABASES["default"]["NAME"]),
               DEFAULT_LLM_ENDPOINT=server.base_url, DEFAULT_LLM_API_KEY=server.api_key,
               DEFAULT_LLM_MODEL="gpt-4o-mini", API_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT),
               WIZCHAT_IGNORE_RUNTIME_ENV="true")
    env.pop("RATE_LIMIT_STORAGE_URL", None)  # the production default: the broker's Redis
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def start_web_server(env: dict, log_path: Path) -> tuple[subprocess.Popen, str]:
    """gunicorn exactly as `make run` starts it; returns the process and its base URL once it answers."""
    from wizchat.run import web_server_command

    port = embedded.free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(web_server_command("127.0.0.1", str(port)), env=env, cwd=str(BASE), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/login/", timeout=90)
    except RuntimeError:
        embedded.stop_process(proc, 70)
        raise AssertionError(f"gunicorn never answered: {log_path.read_text()[-3000:]}") from None
    return proc, base


def start_supervisor(env: dict, log_path: Path) -> subprocess.Popen:
    """`manage.py deployments_supervise`, a process of its own as under `make run`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, str(BASE / "manage.py"), "deployments_supervise"], env=env,
                                cwd=str(BASE), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_exchanges(spec: dict, clients: int = CLIENTS, seconds: float = SECONDS) -> dict:
    """`clients` clients for `seconds` through `spec` (bench/load.py, a process of its own)."""
    return run_load({"mode": "exchanges", "wizchat": spec, "clients": clients, "seconds": seconds},
                    timeout=seconds + 180)


def stored_messages(chatbot) -> list:
    """Every message of the chatbot's conversations store (the default one: the platform PostgreSQL)."""
    from byoi.access import resolve_stack

    store = resolve_stack(chatbot).conversations
    return [m for page in store.iter_messages(chatbot.id) for m in page]


def outbox_waiting(path: Path | None) -> int:
    """Messages waiting in a runtime's outbox (its SQLite file; 0 when it has none)."""
    if path is None or not path.exists():
        return 0
    with sqlite3.connect(path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def wait_stored(chatbot, expected: int, outbox: Path | None = None, timeout: float = 60) -> list:
    """The stored messages once `expected` are there and no outbox holds any (bounded: then as they are)."""
    from conversations.models import Outbox

    deadline = time.monotonic() + timeout
    while True:
        messages = stored_messages(chatbot)
        waiting = outbox_waiting(outbox) + Outbox.objects.filter(chatbot=chatbot).count()
        if (len(messages) >= expected and not waiting) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def _pct(values: list[float], q: float) -> float | None:
    from bench.run import pct

    return round(pct(values, q) * 1000, 1) if values else None


def report(target: str, result: dict, messages: list, tmp_path: Path, extra: dict | None = None,
           clients: int = CLIENTS) -> dict:
    done = [r for r in result["exchanges"] if "error" not in r]
    failed = [r for r in result["exchanges"] if "error" in r]
    out = {
        "target": target, "date": dt.date.today().isoformat(), "clients": clients,
        "seconds": result.get("seconds", SECONDS),
        "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
        "requests": len(result["exchanges"]), "completed": len(done), "errors": len(failed),
        "error_kinds": dict(Counter(r["error"].split(":")[0] for r in failed)),
        "first_errors": [r["error"] for r in failed[:5]], "stuck": result["stuck"],
        "per_second": round(len(done) / result["elapsed"], 2) if result["elapsed"] else None,
        "ttft_ms": {"p50": _pct([r["ttft"] for r in done], 50), "p95": _pct([r["ttft"] for r in done], 95)},
        "total_ms": {"p50": _pct([r["total"] for r in done], 50), "p95": _pct([r["total"] for r in done], 95)},
        "stored_outcomes": dict(Counter(str(r.get("stored")) for r in done)),
        "rows": len(messages), "rows_expected": 2 * len(done), **(extra or {}),
    }
    text = json.dumps(out, indent=2)
    print(f"\nload {target}: {text}")
    (tmp_path / f"load-{target}.json").write_text(text)
    if os.environ.get("WIZCHAT_LOAD_REPORT"):  # one file for every target: a JSON object per line
        with open(os.environ["WIZCHAT_LOAD_REPORT"], "a") as saved:
            saved.write(json.dumps(out) + "\n")
    return out


def assert_exactly_once(result: dict, messages: list, minimum: int = MIN_EXCHANGES) -> None:
    """0 errors, nothing stuck, enough exchanges, and each exchange stored exactly once: its question (found by its
    marker) and its answer in its own conversation, nothing else in the store."""
    exchanges = result["exchanges"]
    failed = [r["error"] for r in exchanges if "error" in r]
    assert not failed, f"{len(failed)} of {len(exchanges)} exchanges failed: {sorted(set(failed))[:5]}"
    assert result["stuck"] == 0
    assert len(exchanges) >= minimum
    assert {r.get("stored") for r in exchanges} == {"stored"}
    by_conversation = defaultdict(list)
    for message in messages:
        by_conversation[message.conversation_id].append(message)
    for r in exchanges:
        stored = by_conversation.get(r["conversation_id"], [])
        assert sorted(m.role for m in stored) == ["assistant", "user"], (r, stored)
        question = next(m for m in stored if m.role == "user")
        assert r["marker"] in question.content
    assert len(messages) == 2 * len(exchanges)
    assert len(by_conversation) == len(exchanges)


@pytest.fixture
def load_env(openai_server, settings):
    fast_llm(openai_server, settings)
    return server_env(openai_server)

"""Idle memory of `make run` (`python -m wizchat.run`) with 0, 1 and 5 deployed runtimes: PSS of every process it
started — the embedded PostgreSQL (its postmaster and backends, found through postmaster.pid: pg_ctl detaches it),
FalkorDB, the Celery worker, the deployments supervisor and its runtimes, gunicorn and the launcher itself.

It runs in a temporary state folder on its own port, with DEFAULT_LLM_ENDPOINT pointing at the benchmark's
OpenAI-protocol server (so llama.cpp is not started), chatbots deployed with `manage.py chatbot_deploy` as an
operator would, and is stopped with SIGINT to its process group (Ctrl-C)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.serving import descendants, memory_mb

BASE = Path(__file__).resolve().parent.parent
# The benchmark's own servers: `make run` must start its own.
_NOT_INHERITED = ("DATABASE_URL", "FALKORDB_URL", "CELERY_BROKER_URL", "WIZCHAT_IGNORE_RUNTIME_ENV",
                  "API_RATE_LIMIT_PER_MINUTE")

SEED = """
import sys
from chatbots.demo import demo_seed_chatbot
from chatbots.models import Chatbot
from chatbots.services import chatbot_create
from wizchat.accounts import account_signup
user = account_signup(email="memory@example.com", password="correct horse battery staple", team_name="Memory",
                      plan_slug="enterprise")
account = user.membership.account
bots = [demo_seed_chatbot(account)]
for i in range(1, 5):
    bots.append(chatbot_create(account, name=f"Memory {i}", instructions="Answer briefly."))
print("IDS", " ".join(str(b.id) for b in bots))
"""


def _groups(run_pid: int, pg_pid: int | None) -> dict[str, list[int]]:
    """The processes `make run` started, by what they are."""
    groups: dict[str, list[int]] = {"PostgreSQL": descendants(pg_pid) if pg_pid else []}
    for child in descendants(run_pid):
        if child == run_pid:
            groups.setdefault("launcher (wizchat.run)", []).append(child)
            continue
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "redis-server" in cmd:
            key = "FalkorDB"
        elif "celery" in cmd:
            key = "Celery worker"
        elif "wizchat.runtime" in cmd or "wizchat-runtime" in cmd:
            key = "runtimes"
        elif "deployments_supervise" in cmd:
            key = "supervisor"
        elif "gunicorn" in cmd:
            key = "web (gunicorn)"
        else:
            key = "other"
        groups.setdefault(key, []).append(child)
    # A runtime's processes descend from the supervisor: count them as runtimes, not as the supervisor.
    sup = groups.get("supervisor", [])
    if sup:
        top = min(sup)
        inside = [p for p in descendants(top) if p != top]
        groups["runtimes"] = sorted(set(groups.get("runtimes", [])) | set(inside))
        groups["supervisor"] = [top]
    return groups


def _snapshot(run_pid: int, pg_pid: int | None) -> dict:
    groups = _groups(run_pid, pg_pid)
    by = {k: memory_mb(v) for k, v in groups.items() if v}
    return {"total_mb": sum(by.values()), "by": by, "processes": sum(len(v) for v in groups.values())}


def _ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} never became ready")


def bench_make_run(server, quick: bool, idle: float = 8.0) -> dict:
    from wizchat import embedded

    state = Path(tempfile.mkdtemp(prefix="wizchat-bench-run-"))
    port = embedded.free_port()
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env.update({"WIZCHAT_STATE_DIR": str(state), "WIZCHAT_PORT": str(port), "DEFAULT_LLM_ENDPOINT": server.base_url,
                "DEFAULT_LLM_API_KEY": server.api_key, "DEFAULT_LLM_MODEL": "gpt-4o-mini",
                "DJANGO_SETTINGS_MODULE": "wizchat.settings"})
    log = open(state.parent / f"{state.name}.log", "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "wizchat.run"], env=env, cwd=str(BASE), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    manage = [sys.executable, str(BASE / "manage.py")]
    out: dict = {}
    try:
        embedded.wait_for_port("127.0.0.1", port, 180, proc, "make run")
        out["start_s"] = time.perf_counter() - started
        pg = embedded.EmbeddedPostgres(state / "pg", 0, "")
        pid_file = pg._pgdata() / "postmaster.pid"
        pg_pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        seeded = subprocess.run([*manage, "shell", "-c", SEED], env=env, cwd=str(BASE), capture_output=True,
                                text=True, check=True)
        ids = re.search(r"IDS (.+)", seeded.stdout).group(1).split()
        time.sleep(idle)
        out["0"] = _snapshot(proc.pid, pg_pid)
        deployed = 0
        for count in (1, 5):
            urls = []
            for chatbot in ids[deployed:count]:
                done = subprocess.run([*manage, "chatbot_deploy", chatbot], env=env, cwd=str(BASE),
                                      capture_output=True, text=True, check=True)
                urls.append(re.search(r"\((http://[^)]+)\)", done.stdout).group(1))
            for url in urls:
                _ready(url, 180)
            deployed = count
            time.sleep(idle)
            out[str(count)] = _snapshot(proc.pid, pg_pid)
        out["per_runtime_mb"] = (out["5"]["by"].get("runtimes", 0) / 5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: wizchat.run stops everything it started
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                embedded.stop_process(proc)
        log.close()
        pg = embedded.EmbeddedPostgres(state / "pg", 0, "")
        if (state / "pg").exists() or (state / "pg").is_symlink():
            pg.discard()
        shutil.rmtree(state, ignore_errors=True)
        Path(state.parent / f"{state.name}.log").unlink(missing_ok=True)
    return out

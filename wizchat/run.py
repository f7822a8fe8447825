"""`make run`: start the embedded defaults (unless external servers are configured), migrate, seed the
plans and the demo account, start a Celery worker and the default LLM, and serve the dashboard.

Ctrl-C stops every process this started. Data lives in the state folder and survives restarts.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from wizchat import embedded

BASE = Path(__file__).resolve().parent.parent
# How long a new web worker waits for its warm-up (worker_ready) before it takes requests anyway: the warm-up goes
# on, and requests that arrive meanwhile wait for what they need instead of doing it again. gunicorn's --timeout
# is 120 s.
WORKER_WARM_SECONDS = 30

log = logging.getLogger("wizchat.run")


def _state_dir() -> Path:
    return Path(os.environ.get("WIZCHAT_STATE_DIR", BASE / ".state"))


def _persisted(state: Path) -> dict:
    """Ports and passwords of the embedded servers, chosen once and reused so data survives restarts."""
    path = state / "embedded.json"
    if path.exists():
        return json.loads(path.read_text())
    config = {
        "pg_port": embedded.free_port(),
        "pg_password": embedded.new_password(),
        "falkor_port": embedded.free_port(),
        "falkor_password": embedded.new_password(),
        "llm_port": embedded.free_port(),
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return config


def web_server_command(host: str, port: str) -> list[str]:
    """The dashboard, the public API and the widget behind gunicorn: worker processes with threads, so streamed
    answers keep flowing while other requests arrive (static files through whitenoise)."""
    return [sys.executable, "-m", "gunicorn", "wizchat.wsgi:application", "--bind", f"{host}:{port}",
            "--worker-class", "gthread", "--workers", os.environ.get("WIZCHAT_WEB_WORKERS", "2"),
            "--threads", os.environ.get("WIZCHAT_WEB_THREADS", "16"), "--timeout", "120",
            "--graceful-timeout", "30", "--no-control-socket", "--access-logfile", "-", "--access-logformat",
            '%(h)s "%(m)s %(U)s" %(s)s %(M)sms', "--config", "python:wizchat.gunicorn_config"]


def worker_ready(worker, *, timeout: float = WORKER_WARM_SECONDS) -> bool:
    """gunicorn's post_worker_init (wizchat.gunicorn_config): before a new web worker takes requests, do the
    one-time work its first requests would otherwise all pay for at once — the public API's rate-limit counter
    store (its client, imports and first connection) and, when the default embeddings are the in-process model,
    that model (as a deployed runtime does: wizchat.runtime.server). The wait is bounded by `timeout`; past it
    the worker serves anyway and the warm-up goes on beside it. True when everything is ready."""
    outcome: list[bool] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: outcome.append(_warm_up()), name="wizchat-warm-up", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        log.warning("Web worker %d is still warming up after %.0f s; serving meanwhile", os.getpid(), timeout)
        return False
    log.info("Web worker %d warmed up in %.2f s", os.getpid(), time.monotonic() - started)
    return bool(outcome and outcome[0])


def _warm_up() -> bool:
    from byoi.backends.embeddings import LocalEmbeddings
    from byoi.resolver import default_slot
    from chatbots.publicapi import rate_limit_prepare

    ready = rate_limit_prepare()
    try:
        embedder = default_slot("embeddings").instance()
        if isinstance(embedder, LocalEmbeddings):  # an embeddings API has nothing to load here
            embedder.embed(["warm up"])
    except Exception:  # noqa: BLE001 - the first question reports it with its component's error
        log.warning("The default embeddings could not be warmed up")
        return False
    return ready


def main() -> int:
    state = _state_dir()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state / "logs").mkdir(exist_ok=True)
    config = _persisted(state)
    env = dict(os.environ)
    runtime: dict[str, str] = {}
    children: list = []
    pg = falkor = None
    host, port = os.environ.get("WIZCHAT_HOST", "127.0.0.1"), os.environ.get("WIZCHAT_PORT", "8000")

    def shutdown(*_):
        print("\nStopping WizChat…", flush=True)
        for proc in reversed(children):
            embedded.stop_process(proc)
        if falkor:
            falkor.stop()
        if pg:
            pg.stop()
        (state / "runtime.env").unlink(missing_ok=True)
        print("All WizChat processes stopped.", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    started = time.monotonic()
    try:
        if not env.get("DATABASE_URL"):
            print("Starting embedded PostgreSQL + pgvector…", flush=True)
            pg = embedded.EmbeddedPostgres(state / "pg", config["pg_port"], config["pg_password"])
            pg.start()
            pg.ensure_database("wizchat")
            runtime["DATABASE_URL"] = pg.url("wizchat")
        if not env.get("FALKORDB_URL") or not env.get("CELERY_BROKER_URL"):
            print("Starting embedded FalkorDB (also the Celery broker)…", flush=True)
            falkor = embedded.EmbeddedFalkor(state / "falkordb", config["falkor_port"], config["falkor_password"])
            falkor.start()
            runtime.setdefault("FALKORDB_URL", env.get("FALKORDB_URL") or falkor.url(0))
            runtime.setdefault("CELERY_BROKER_URL", env.get("CELERY_BROKER_URL") or falkor.url(1))
        if not env.get("DEFAULT_LLM_ENDPOINT"):
            if embedded.llama_server_available():
                print("Starting the default LLM (llama.cpp, SmolLM2-135M-Instruct)…", flush=True)
                children.append(embedded.start_llm_server(config["llm_port"], state / "logs" / "llm.log"))
                runtime["DEFAULT_LLM_ENDPOINT"] = f"http://127.0.0.1:{config['llm_port']}/v1"
            else:
                print("llama-cpp-python is not installed: the default LLM is off (set DEFAULT_LLM_ENDPOINT).")
        # The servers' addresses go to a 0600 file the settings read, so `manage.py` works beside `make run`.
        env_file = state / "runtime.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in runtime.items()))
        env_file.chmod(0o600)
        env.update(runtime)
        manage = [sys.executable, str(BASE / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "seed_demo"], env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--noinput", "-v", "0"], env=env, check=True)
        print("Starting the Celery worker…", flush=True)
        children.append(embedded.start_celery_worker(env, state / "logs" / "celery.log"))
        # Chatbots deployed to this machine: their runtimes, each behind its own port (stopped with the rest).
        with open(state / "logs" / "deployments.log", "ab") as log:
            children.append(subprocess.Popen([*manage, "deployments_supervise"], env=env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True))
        server = subprocess.Popen(web_server_command(host, port), env=env, start_new_session=True,
                                  cwd=str(BASE))
        children.append(server)
        embedded.wait_for_port(host, int(port), 60, server, "web server")
        print(f"\nWizChat is ready in {time.monotonic() - started:.1f}s: http://{host}:{port}/", flush=True)
        print("Demo login: demo@wizchat.local / wizchat-demo  (Ctrl-C stops everything)\n", flush=True)
        while True:
            for proc in children:
                if proc.poll() is not None:
                    print(f"A WizChat process exited (code {proc.returncode}); stopping.", flush=True)
                    shutdown()
            time.sleep(1)
    except (subprocess.CalledProcessError, RuntimeError) as error:
        print(f"WizChat could not start: {error}", file=sys.stderr)
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serving benchmarks, through the production server: the public API on the platform (gunicorn, as `make run`
serves it) and on a deployed runtime, each against a direct call with the same prompt to the same
OpenAI-protocol endpoint; the time from Deploy to the first answer; a runtime's idle memory; and requests
dropped while a chatbot is redeployed under a bounded loopback load (fixed clients, fixed duration)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent


def _pct(values, q):
    from bench.run import pct

    return pct(values, q)


def rss_mb(pid: int, field: str = "Pss") -> float:
    """Memory of a process and its children (a gunicorn master and its worker), in MB. Pss by default: pages
    the forked worker shares with its master count once, split between them (Rss would count them twice)."""
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(p) for p in children]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback http
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


def _pairs(client, direct, model: str, question: str, stream: bool) -> dict:
    """One call through WizChat's API, and one with the same prompt straight to the endpoint."""

    def wizchat_once():
        start = time.perf_counter()
        if stream:
            for _ in client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                    stream=True):
                pass
        else:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
        return time.perf_counter() - start

    def direct_once(body):
        start = time.perf_counter()
        if stream:
            for _ in direct.chat.completions.create(model=body["model"], messages=body["messages"],
                                                    max_tokens=body.get("max_tokens"), stream=True):
                pass
        else:
            direct.chat.completions.create(model=body["model"], messages=body["messages"],
                                           max_tokens=body.get("max_tokens"))
        return time.perf_counter() - start

    return {"wizchat": wizchat_once, "direct": direct_once}


def bench_api(server, env_vars: dict, chatbot, key: str, iterations: int) -> dict:
    """p50/p95 of (API through gunicorn − direct call), streamed and not."""
    import openai

    port = _free_port()
    env = {**os.environ, **env_vars}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "wizchat.wsgi:application", "--bind",
                             f"127.0.0.1:{port}", "--worker-class", "gthread", "--workers", "2", "--threads", "16",
                             "--no-control-socket", "--log-level", "warning"], env=env, cwd=str(BASE),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/login/")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        out = _overhead(server, client, chatbot.slug, iterations)
        out["web_rss_mb"] = rss_mb(proc.pid)
        return out
    finally:
        from wizchat import embedded

        embedded.stop_process(proc)


def _overhead(server, client, model: str, iterations: int) -> dict:
    import openai

    from chatbots.demo import SAMPLE_QUESTION

    direct = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    result = {}
    for stream in (False, True):
        runners = _pairs(client, direct, model, SAMPLE_QUESTION, stream)
        for _ in range(8):
            runners["wizchat"]()
        body = server.calls("/chat/completions")[-1].body
        for _ in range(3):
            runners["direct"](body)
        over = []
        for _ in range(iterations):
            w = runners["wizchat"]()
            d = runners["direct"](body)
            over.append(w - d)
        name = "stream" if stream else "plain"
        result[f"{name}_p50"] = _pct(over, 50) * 1000
        result[f"{name}_p95"] = _pct(over, 95) * 1000
    result["iterations"] = iterations
    return result


def _free_port() -> int:
    from wizchat import embedded

    return embedded.free_port()


def bench_runtime(server, chatbot, key: str, iterations: int, load_seconds: float = 20, clients: int = 8) -> dict:
    """Deploy locally through the supervisor, measure, then redeploy under a bounded load."""
    import openai

    from chatbots.demo import SAMPLE_QUESTION
    from chatbots.deployments import deployment_create
    from chatbots.models import Deployment
    from chatbots.supervisor import Supervisor

    sup = Supervisor(poll=0.2)
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    try:
        started = time.perf_counter()
        deployment_create(chatbot, "local")
        while Deployment.objects.get(chatbot=chatbot).status != "running":
            if time.perf_counter() - started > 120:
                raise RuntimeError("the runtime never became ready: " + Deployment.objects.get(chatbot=chatbot).reason)
            time.sleep(0.05)
        ready_s = time.perf_counter() - started
        url = Deployment.objects.get(chatbot=chatbot).url
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        client.chat.completions.create(model=chatbot.slug, messages=[{"role": "user", "content": SAMPLE_QUESTION}])
        first_answer_s = time.perf_counter() - started
        time.sleep(5)  # idle
        [entry] = sup.entries.values()
        idle_rss = rss_mb(entry.current.process.pid)
        idle_rss_plain = rss_mb(entry.current.process.pid, "Rss")
        overhead = _overhead(server, client, chatbot.slug, iterations)
        # Bounded load: `clients` threads asking, each on a new connection, for `load_seconds`; redeploy midway.
        stop = threading.Event()
        ok, failed = [0], []
        lock = threading.Lock()

        def asker():
            c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            while not stop.is_set():
                try:
                    for _ in c.chat.completions.create(model=chatbot.slug, stream=True,
                                                       messages=[{"role": "user", "content": SAMPLE_QUESTION}]):
                        pass
                    with lock:
                        ok[0] += 1
                except Exception as error:  # noqa: BLE001 - counted
                    with lock:
                        failed.append(type(error).__name__)

        server.word_delay = 0.05  # answers take ~0.3 s, so streams are in flight at the switch
        workers = [threading.Thread(target=asker) for _ in range(clients)]
        for w in workers:
            w.start()
        time.sleep(load_seconds / 3)
        generation = deployment_create(chatbot, "local").generation
        switch_started = time.perf_counter()
        while Deployment.objects.get(chatbot=chatbot).running_generation < generation:
            time.sleep(0.05)
        switch_s = time.perf_counter() - switch_started
        time.sleep(load_seconds * 2 / 3)
        stop.set()
        for w in workers:
            w.join(60)
        server.word_delay = 0
        return {"ready_s": ready_s, "first_answer_s": first_answer_s, "idle_rss_mb": idle_rss,
                "idle_rss_plain_mb": idle_rss_plain,
                "overhead": overhead, "load_ok": ok[0], "load_failed": len(failed),
                "load_failures": sorted(set(failed)), "clients": clients, "load_seconds": load_seconds,
                "switch_s": switch_s}
    finally:
        sup.stop()
        thread.join(120)


def bench_serving(server, env, quick: bool) -> dict:
    from chatbots.apikeys import apikey_create
    from chatbots.demo import demo_seed_chatbot
    from wizchat.accounts import account_signup

    user = account_signup(email=f"serve-{uuid.uuid4().hex[:6]}@example.com", password="correct horse battery",
                          team_name="Serving", plan_slug="enterprise")
    chatbot = demo_seed_chatbot(user.membership.account)
    _, key = apikey_create(chatbot, "bench")
    iterations = 30 if quick else 150
    env_vars = {k: os.environ[k] for k in ("WIZCHAT_STATE_DIR", "WIZCHAT_IGNORE_RUNTIME_ENV", "DATABASE_URL",
                                           "FALKORDB_URL", "CELERY_BROKER_URL", "DEFAULT_LLM_ENDPOINT",
                                           "DEFAULT_LLM_API_KEY", "DEFAULT_LLM_MODEL", "EGRESS_ALLOWED_NETWORKS")}
    env_vars["RATE_LIMIT_STORAGE_URL"] = "memory://"
    env_vars["API_RATE_LIMIT_PER_MINUTE"] = "0"  # measuring, not limiting
    os.environ["API_RATE_LIMIT_PER_MINUTE"] = "0"
    from django.conf import settings

    settings.API_RATE_LIMIT_PER_MINUTE = 0
    platform = bench_api(server, env_vars, chatbot, key, iterations)
    runtime = bench_runtime(server, chatbot, key, iterations, load_seconds=10 if quick else 20)
    return {"platform": platform, "runtime": runtime}


def report_lines(s: dict) -> list[str]:
    p, r = s["platform"], s["runtime"]
    o = r["overhead"]
    return [
        "## Serving: public API, deployed runtime",
        "",
        f"- **Public API on the platform** (gunicorn gthread, 2 workers × 16 threads, as `make run` serves it; the "
        f"official `openai` client; {p['iterations']} interleaved pairs after warm-up, each against the same prompt "
        f"sent straight to the same OpenAI-protocol endpoint): overhead p50 {p['plain_p50']:.1f} ms, p95 "
        f"{p['plain_p95']:.1f} ms; streamed to the end p50 {p['stream_p50']:.1f} ms, p95 {p['stream_p95']:.1f} ms. "
        f"Memory of the web server (master + workers) after the run: {p['web_rss_mb']:.0f} MB PSS.",
        f"- **Deployed runtime** (local target, the supervisor `make run` runs): Deploy → running (its `/readyz` "
        f"green) {r['ready_s']:.1f} s, → first answer through the runtime's port {r['first_answer_s']:.1f} s; idle "
        f"memory of one runtime (gunicorn master + worker, default in-process embedder loaded) {r['idle_rss_mb']:.0f} MB "
        f"PSS ({r['idle_rss_plain_mb']:.0f} MB RSS, which counts the pages the worker shares with its master twice); "
        f"API overhead through the runtime p50 {o['plain_p50']:.1f} ms, p95 {o['plain_p95']:.1f} ms (streamed p50 "
        f"{o['stream_p50']:.1f} ms, p95 {o['stream_p95']:.1f} ms).",
        f"- **Redeploy under load**: {r['clients']} clients streaming answers (~0.3 s each, a new connection per "
        f"request) for {r['load_seconds']:.0f} s, the chatbot redeployed a third of the way in (the new runtime "
        f"took over after {r['switch_s']:.1f} s): {r['load_ok']} answers completed, **{r['load_failed']} failed**"
        + (f" ({', '.join(r['load_failures'])})" if r["load_failures"] else "") + " (target 0).",
        "",
    ]

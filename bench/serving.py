"""Serving benchmarks, through the production server: the public API and the dashboard chat (server-sent events
after a real log-in) on the platform's gunicorn, started exactly as `make run` starts it, and the public API on a
deployed runtime run by the supervisor `make run` runs (a process of its own). Each is measured against a direct
call with the same request body to the same OpenAI-protocol endpoint, from the same HTTP client in a process of
its own (bench/load.py): one client (interleaved pairs), then bounded loads of concurrent streaming clients (a
fixed count for a fixed time; every client stops by itself), stepping up until the p95 overhead passes 100 ms.
Also: Deploy → first answer, a runtime's idle memory, and requests dropped while redeploying under load."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
LOAD_REPLY_WORDS = 20  # streamed answers of the load tests: 20 words, one every 50 ms (~1 s, a fast real LLM)
LOAD_WORD_DELAY = 0.05
SUSTAINED_P95_MS = 100.0


def _pct(values, q):
    from bench.run import pct

    return pct(values, q)


# -- processes and memory ------------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc, children of children included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory_mb(pids, field: str = "Pss") -> float:
    """Sum of a memory field over processes, in MB. Pss by default: pages a forked worker shares with its master
    count once, split between them (Rss would count them once per process)."""
    total = 0
    for p in set(pids):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pids) -> float:
    """User + system CPU time consumed so far by these processes (their finished children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in set(pids):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def rss_mb(pid: int, field: str = "Pss") -> float:
    """Memory of a process and everything below it (a gunicorn master and its workers), in MB."""
    return memory_mb(descendants(pid), field)


def wait_http(url: str, timeout: float = 60) -> None:
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


def _free_port() -> int:
    from wizchat import embedded

    return embedded.free_port()


def _stop(proc: subprocess.Popen | None) -> None:
    from wizchat import embedded

    embedded.stop_process(proc, timeout=70)


# -- the load generator ----------------------------------------------------------------------------------------

def run_load(config: dict, timeout: float = 300) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.load", json.dumps(config)], cwd=str(BASE), check=True,
                         capture_output=True, text=True, timeout=timeout)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_load(config: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.load", json.dumps(config)], cwd=str(BASE),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_client(wizchat: dict, direct: dict, n: int, cpu: dict | None = None) -> dict:
    """`cpu`: {part: callable returning pids}: the CPU time those processes spend per answer during the pairs
    (what the answers cost whatever else runs on the machine; the direct calls cost them nothing)."""
    before = {k: cpu_seconds(f()) for k, f in (cpu or {}).items()}
    r = run_load({"mode": "pairs", "wizchat": wizchat, "direct": direct, "pairs": n, "warmup": 8})
    per = {k: (cpu_seconds(f()) - before[k]) / (n + 8) * 1000 for k, f in (cpu or {}).items()}
    ms = [x * 1000 for x in r["overhead"]]
    return {"n": n, "p50": _pct(ms, 50), "p95": _pct(ms, 95), "wizchat_p50": _pct(r["wizchat"], 50) * 1000,
            "direct_p50": _pct(r["direct"], 50) * 1000, "cpu_ms": per}


def concurrent(wizchat: dict, direct: dict, clients: int, seconds: float) -> dict:
    """`clients` WizChat streams at once for `seconds`, beside a few direct streams (the baseline under the same
    load): overhead of each WizChat answer = its duration − the median direct duration of the same window."""
    r = run_load({"mode": "load", "wizchat": wizchat, "direct": direct, "clients": clients,
                  "direct_clients": max(2, clients // 10), "seconds": seconds, "settle": min(3.0, seconds / 4)},
                 timeout=seconds + 120)
    base = statistics.median(r["direct"]) if r["direct"] else float("nan")
    over = [(w - base) * 1000 for w in r["wizchat"]]
    return {"clients": clients, "seconds": seconds, "answers": len(r["wizchat"]), "errors": len(r["errors"]),
            "error_kinds": sorted({e.split(":")[1].strip() for e in r["errors"]})[:3] + r["errors"][:2],
            "stuck": r["stuck"], "p50": _pct(over, 50), "p95": _pct(over, 95),
            "direct_p50": base * 1000, "direct_p95": _pct(r["direct"], 95) * 1000}


def ramp(wizchat: dict, direct: dict, levels: list[int], seconds: float, known: dict | None = None) -> dict:
    """Step the number of concurrent streams up until the p95 overhead reaches SUSTAINED_P95_MS or an answer
    fails; bounded by `levels`. `known`: levels already measured (reused, not run again)."""
    steps, best = [], 0
    for clients in levels:
        step = (known or {}).get(clients) or concurrent(wizchat, direct, clients, seconds)
        steps.append(step)
        if step["errors"] or step["stuck"] or not step["p95"] < SUSTAINED_P95_MS:
            break
        best = clients
    return {"steps": steps, "sustained": best, "limit": levels[-1]}


# -- the platform: gunicorn as `make run` starts it -------------------------------------------------------------

def login(base: str, email: str, password: str = PASSWORD) -> dict:
    """A real log-in over HTTP: the log-in page's CSRF token, then the form; returns cookies and the CSRF token."""
    import httpx

    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        done = client.post("/login/", data={"username": email, "password": password, "csrfmiddlewaretoken": token},
                           headers={"Referer": f"{base}/login/"})
        if done.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"log-in failed: HTTP {done.status_code}")
        return {"cookies": dict(client.cookies), "csrf": client.cookies["csrftoken"]}


def _specs(server, base: str, key: str, slug: str, question: str, session: dict | None, chatbot_id) -> dict:
    """The WizChat requests and, for each, the direct request with the exact body WizChat sends the endpoint."""
    import httpx

    auth = {"Authorization": f"Bearer {key}"}
    api_body = {"model": slug, "messages": [{"role": "user", "content": question}]}
    specs = {
        "api_plain": {"url": f"{base}/v1/chat/completions", "headers": auth, "json": api_body, "kind": "plain"},
        "api_stream": {"url": f"{base}/v1/chat/completions", "headers": auth, "json": {**api_body, "stream": True},
                       "kind": "api"},
    }
    if session:
        specs["dashboard_sse"] = {
            "url": f"{base}/dashboard/chatbots/{chatbot_id}/chat/", "form": {"question": question},
            "headers": {"Accept": "text/event-stream", "X-CSRFToken": session["csrf"], "Referer": f"{base}/"},
            "cookies": session["cookies"], "kind": "sse"}
    direct_headers = {"Authorization": f"Bearer {server.api_key}"}
    out = {}
    with httpx.Client(timeout=30, cookies=(session or {}).get("cookies")) as client:
        for name, spec in specs.items():
            server.requests.clear()
            kwargs = {"json": spec["json"]} if "json" in spec else {"data": spec["form"]}
            with client.stream("POST", spec["url"], headers=spec["headers"], **kwargs) as response:
                response.read()
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: HTTP {response.status_code} {response.text[:300]}")
            body = server.calls("/chat/completions")[-1].body
            out[name] = (spec, {"url": f"{server.base_url}/chat/completions", "headers": direct_headers,
                                "json": body, "kind": "api" if body.get("stream") else "plain"})
    return out


def _floor(server, base: str, key: str, n: int) -> dict:
    """HTTP + Django + API-key check alone: GET /v1/models through WizChat vs the endpoint's own GET /v1/models."""
    r = run_load({"mode": "pairs", "pairs": n, "warmup": 5,
                  "wizchat": {"url": f"{base}/v1/models", "headers": {"Authorization": f"Bearer {key}"},
                              "kind": "get"},
                  "direct": {"url": f"{server.base_url}/models",
                             "headers": {"Authorization": f"Bearer {server.api_key}"}, "kind": "get"}})
    return {"p50": _pct(r["overhead"], 50) * 1000}


def _long_answers(server):
    server.reply = " ".join(f"word{i}" for i in range(LOAD_REPLY_WORDS))
    server.word_delay = LOAD_WORD_DELAY


def _short_answers(server):
    from tests.openai_server import REPLY

    server.reply = REPLY
    server.word_delay = 0.0


def _store_pids(env) -> dict:
    """The benchmark's PostgreSQL (postmaster and backends) and FalkorDB, for CPU accounting."""
    def pg():
        pid_file = env.pg._pgdata() / "postmaster.pid"
        try:
            return descendants(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError):
            return []

    return {"PostgreSQL": pg, "FalkorDB": lambda: [env.falkor.process.pid] if env.falkor.process else []}


def bench_platform(server, env, env_vars: dict, user, chatbot, key: str, quick: bool) -> dict:
    from chatbots.demo import SAMPLE_QUESTION
    from wizchat.run import web_server_command

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(web_server_command("127.0.0.1", str(port)), env={**os.environ, **env_vars},
                            cwd=str(BASE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    n = 40 if quick else 150
    seconds = 6 if quick else 12
    try:
        wait_http(f"{base}/login/")
        session = login(base, user.email)
        specs = _specs(server, base, key, chatbot.slug, SAMPLE_QUESTION, session, chatbot.id)
        cpu = {"web server": lambda: descendants(proc.pid), **_store_pids(env)}
        out = {"one": {name: one_client(w, d, n, cpu) for name, (w, d) in specs.items()},
               "floor": _floor(server, base, key, n)}
        _long_answers(server)
        try:
            w, d = specs["api_stream"]
            twenty = concurrent(w, d, 20, seconds * 1.5)
            out["twenty"] = {"api_stream": twenty,
                             "dashboard_sse": concurrent(*specs["dashboard_sse"], 20, seconds * 1.5)}
            levels = [10, 20, 40, 80] if quick else [10, 20, 40, 80, 160]
            out["ramp"] = ramp(w, d, levels, seconds, known={20: twenty})
        finally:
            _short_answers(server)
        out["web_pss_mb"] = rss_mb(proc.pid)
        out["workers"], out["threads"] = (int(os.environ.get("WIZCHAT_WEB_WORKERS", "2")),
                                          int(os.environ.get("WIZCHAT_WEB_THREADS", "16")))
        out["iterations"] = n
        return out
    finally:
        _stop(proc)


# -- a deployed runtime ---------------------------------------------------------------------------------------------

def _status(chatbot):
    from chatbots.models import Deployment

    return Deployment.objects.get(chatbot=chatbot)


def bench_runtime(server, env, env_vars: dict, chatbot, key: str, quick: bool) -> dict:
    """Deploy locally through the supervisor (`manage.py deployments_supervise`, a process of its own as under
    `make run`), measure, then redeploy under a bounded load."""
    from chatbots.demo import SAMPLE_QUESTION
    from chatbots.deployments import deployment_create

    sup = subprocess.Popen([sys.executable, str(BASE / "manage.py"), "deployments_supervise"],
                           env={**os.environ, **env_vars}, cwd=str(BASE), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    n = 40 if quick else 150
    seconds = 6 if quick else 12
    try:
        started = time.perf_counter()
        deployment_create(chatbot, "local")
        while (d := _status(chatbot)).status != "running":
            if time.perf_counter() - started > 120 or sup.poll() is not None:
                raise RuntimeError(f"the runtime never became ready: {d.status} {d.reason}")
            time.sleep(0.05)
        ready_s = time.perf_counter() - started
        base = d.url
        import httpx

        answer = httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                            json={"model": chatbot.slug, "messages": [{"role": "user", "content": SAMPLE_QUESTION}]})
        answer.raise_for_status()
        first_answer_s = time.perf_counter() - started
        time.sleep(5)  # idle
        runtimes = [p for p in descendants(sup.pid) if p != sup.pid]
        idle_pss, idle_rss = memory_mb(runtimes), memory_mb(runtimes, "Rss")
        specs = _specs(server, base, key, chatbot.slug, SAMPLE_QUESTION, None, chatbot.id)
        cpu = {"runtime": lambda: [p for p in descendants(sup.pid) if p != sup.pid],
               "relay (supervisor)": lambda: [sup.pid], **_store_pids(env)}
        out = {"ready_s": ready_s, "first_answer_s": first_answer_s, "idle_pss_mb": idle_pss,
               "idle_rss_mb": idle_rss, "iterations": n,
               "one": {name: one_client(w, dd, n, cpu) for name, (w, dd) in specs.items()}}
        w, dd = specs["api_stream"]
        _long_answers(server)
        try:
            twenty = concurrent(w, dd, 20, seconds * 1.5)
            out["twenty"] = {"api_stream": twenty}
            levels = [10, 20, 40, 80] if quick else [10, 20, 40, 80, 160]
            out["ramp"] = ramp(w, dd, levels, seconds, known={20: twenty})
            out["redeploy"] = _redeploy_under_load(chatbot, w, dd, 10 if quick else 20)
        finally:
            _short_answers(server)
        return out
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(90)
        except subprocess.TimeoutExpired:
            _stop(sup)


def _redeploy_under_load(chatbot, wizchat: dict, direct: dict, seconds: float, clients: int = 8) -> dict:
    """`clients` streaming clients (a new connection per request) for `seconds`; the chatbot redeployed a third of
    the way in. Every request that fails counts."""
    from chatbots.deployments import deployment_create

    spec = {**wizchat, "headers": {**wizchat["headers"], "Connection": "close"}}
    load = start_load({"mode": "load", "wizchat": spec, "direct": direct, "clients": clients, "direct_clients": 0,
                       "seconds": seconds, "settle": 0})
    time.sleep(seconds / 3)
    generation = deployment_create(chatbot, "local").generation
    switch_started = time.perf_counter()
    while _status(chatbot).running_generation < generation:
        if time.perf_counter() - switch_started > 90:
            break
        time.sleep(0.05)
    switch_s = time.perf_counter() - switch_started
    stdout, _ = load.communicate(timeout=seconds + 120)
    r = json.loads(stdout.strip().splitlines()[-1])
    return {"clients": clients, "seconds": seconds, "ok": len(r["wizchat"]), "failed": len(r["errors"]),
            "failures": sorted(set(r["errors"]))[:3], "switch_s": switch_s}


def bench_serving(server, env, quick: bool) -> dict:
    from django.conf import settings

    from chatbots.apikeys import apikey_create
    from chatbots.demo import demo_seed_chatbot
    from wizchat.accounts import account_signup

    user = account_signup(email=f"serve-{uuid.uuid4().hex[:6]}@example.com", password=PASSWORD,
                          team_name="Serving", plan_slug="enterprise")
    chatbot = demo_seed_chatbot(user.membership.account)
    _, key = apikey_create(chatbot, "bench")
    env_vars = {k: os.environ[k] for k in ("WIZCHAT_STATE_DIR", "WIZCHAT_IGNORE_RUNTIME_ENV", "DATABASE_URL",
                                           "FALKORDB_URL", "CELERY_BROKER_URL", "DEFAULT_LLM_ENDPOINT",
                                           "DEFAULT_LLM_API_KEY", "DEFAULT_LLM_MODEL", "EGRESS_ALLOWED_NETWORKS")}
    # Measuring, not limiting: no API rate limit, counters in memory (what a test of the limiter would change).
    env_vars["RATE_LIMIT_STORAGE_URL"] = "memory://"
    env_vars["API_RATE_LIMIT_PER_MINUTE"] = "0"
    os.environ["API_RATE_LIMIT_PER_MINUTE"] = "0"
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    platform = bench_platform(server, env, env_vars, user, chatbot, key, quick)
    runtime = bench_runtime(server, env, env_vars, chatbot, key, quick)
    from bench.report import _pool_limits

    return {"platform": platform, "runtime": runtime, "llm_pool": _pool_limits()}

"""Test Connection: how fast each failure class is reported, and what a successful check costs, per kind.

  python -m bench.connection_tests [--quick]            start own peers, print the figures
  python -m bench.connection_tests --serve FILE          start the peers, write CUSTOM_* settings to FILE, wait
  python -m bench.connection_tests --kind K --once [--baseline]
                                                         one check (or one baseline operation) with the CUSTOM_*
                                                         settings in the environment, as a whole process

Everything goes through `byoi.checks.check_run`, the function the Celery task runs, with customer settings
(egress guard on; EGRESS_ALLOWED_NETWORKS=127.0.0.0/8), connect timeout 2 s and operation timeout 3 s.

Peers, all on loopback and started here: embedded PostgreSQL 18 + pgvector (a least-privilege role owning its
database, pgvector installed by the admin), embedded FalkorDB with a password, the OpenAI-protocol test server
(tests/openai_server.py) over HTTP, the same server over HTTPS with a certificate from a CA WizChat does not
trust, TLS listeners with that certificate for PostgreSQL (answers the SSL request, then TLS) and FalkorDB, a
closed port, a port that never completes the TCP handshake and a port that accepts but never answers.

Success cost: each kind's whole checklist, interleaved run by run with the cheapest equivalent raw operation
(one chat completion / one embeddings call with the plain openai client, one psycopg connect + SELECT 1, one
redis PING with the password) against the same peer, so the figure is a ratio within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.failure_times import BASE, CONNECT_TIMEOUT, OPERATION_TIMEOUT, SilentListener

KINDS = ("llm", "embeddings", "vector_store", "conversations", "graph")
CLASSES = ("refused", "timeout", "silent", "auth", "tls")
CLASS_LABELS = {
    "refused": "refused (closed port)",
    "timeout": "timeout (TCP handshake never completes)",
    "silent": "silent (connects, never answers)",
    "auth": "auth (wrong key / password)",
    "tls": "tls (certificate from an unrelated CA)",
}
FAMILY = {"llm": "HTTP", "embeddings": "HTTP", "vector_store": "PostgreSQL", "conversations": "PostgreSQL",
          "graph": "FalkorDB"}
# The CUSTOM_* variables --once reads (the spec's names, as in byoi/registry.py; read here without Django so
# that the baseline process imports only its client library).
ENV = {
    "llm": {"endpoint": "CUSTOM_LLM_ENDPOINT", "api_key": "CUSTOM_LLM_API_KEY", "model": "CUSTOM_LLM_MODEL"},
    "embeddings": {"endpoint": "CUSTOM_EMBEDDINGS_ENDPOINT", "api_key": "CUSTOM_EMBEDDINGS_API_KEY",
                   "model": "CUSTOM_EMBEDDINGS_MODEL", "dimensions": "CUSTOM_EMBEDDINGS_DIMENSIONS"},
    "vector_store": {f: f"CUSTOM_PGVECTOR_{v}" for f, v in (("host", "HOST"), ("port", "PORT"), ("database", "DATABASE"),
                     ("username", "USER"), ("password", "PASSWORD"), ("ssl_mode", "SSL_MODE"))},
    "conversations": {f: f"CUSTOM_CONVERSATIONS_{v}" for f, v in (("host", "HOST"), ("port", "PORT"),
                      ("database", "DATABASE"), ("username", "USER"), ("password", "PASSWORD"),
                      ("ssl_mode", "SSL_MODE"))},
    "graph": {"host": "CUSTOM_FALKORDB_HOST", "port": "CUSTOM_FALKORDB_PORT", "password": "CUSTOM_FALKORDB_PASSWORD",
              "ssl": "CUSTOM_FALKORDB_SSL"},
}
CHECK_PROMPT = [{"role": "user", "content": "Reply with the single word: OK"}]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    i = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[i]


# -- peers ---------------------------------------------------------------------------------------------------

class TlsListener:
    """Accepts TCP, then serves a TLS handshake with `context` (after answering PostgreSQL's SSL request with
    "S" when `postgres`), then closes: enough for a client that verifies the certificate to fail for real."""

    def __init__(self, context: ssl.SSLContext, postgres: bool):
        self.context, self.postgres = context, postgres
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._loop, daemon=True, name=f"tls-listener-{self.port}").start()

    def _loop(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with contextlib.suppress(OSError), conn:
            if self.postgres:
                conn.recv(8)
                conn.sendall(b"S")
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def _quiet_tls(handle_error):
    def handle(request, client_address):
        if not isinstance(sys.exc_info()[1], ssl.SSLError):
            handle_error(request, client_address)

    return handle


class Peers:
    """Every server the benchmark talks to. Pass the running PostgreSQL / FalkorDB / OpenAI server of
    `make bench` to reuse them; whatever is started here is stopped by stop()."""

    def __init__(self, pg=None, falkor=None, server=None):
        from wizchat import embedded

        self.root = Path(tempfile.mkdtemp(prefix="wizchat-bench-conn-"))
        self.own_pg, self.own_falkor, self.own_server = pg is None, falkor is None, server is None
        self.pg = pg or embedded.EmbeddedPostgres(self.root / "pg", embedded.free_port(), embedded.new_password())
        self.falkor = falkor or embedded.EmbeddedFalkor(self.root / "falkor", embedded.free_port(),
                                                        embedded.new_password())
        self.server = server
        self.started: list = []

    def start(self) -> Peers:
        import psycopg
        from psycopg import sql

        from tests.openai_server import OpenAIServer
        from tests.tls_peers import _ca, _pem, _server_cert
        from wizchat import embedded

        if self.own_pg:
            self.pg.start()
        if self.own_falkor:
            self.falkor.start()
        if self.own_server:
            self.server = OpenAIServer().start()
        # A customer's database: a role that owns it, pgvector installed by the admin.
        self.database = f"bench_{uuid.uuid4().hex[:8]}"
        self.role, self.role_password = f"r_{self.database}", embedded.new_password()
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(self.role),
                                                                            sql.Literal(self.role_password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.database),
                                                                      sql.Identifier(self.role)))
        with psycopg.connect(self.pg.dsn(self.database), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        # WizChat trusts one CA (BYOI_CA_BUNDLE); the TLS peers' certificate is signed by another one.
        _, trusted = _ca("WizChat bench CA")
        other_key, other = _ca("Unrelated CA")
        key, cert = _server_cert(other_key, other)
        self.trusted_ca = self.root / "trusted-ca.pem"
        self.trusted_ca.write_bytes(_pem(trusted))
        chain, key_file = self.root / "server.pem", self.root / "server.key"
        chain.write_bytes(_pem(cert) + _pem(other))
        from cryptography.hazmat.primitives import serialization

        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key_file)
        self.https = OpenAIServer(api_key=self.server.api_key, tls=context).start()
        self.https._httpd.handle_error = _quiet_tls(self.https._httpd.handle_error)  # rejected handshakes expected
        self.tls_pg = TlsListener(context, postgres=True)
        self.tls_redis = TlsListener(context, postgres=False)
        self.never = SilentListener(accepting=False)
        self.silent = SilentListener(accepting=True)
        self.closed_port = embedded.free_port()
        self.started = [self.https, self.tls_pg, self.tls_redis, self.never, self.silent]
        return self

    def pg_settings(self, **overrides) -> dict:
        return {"host": "127.0.0.1", "port": self.pg.port, "database": self.database, "username": self.role,
                "password": self.role_password, "ssl_mode": "disable", **overrides}

    def success_settings(self, kind: str) -> dict:
        if kind == "llm":
            return self.server.llm_settings()
        if kind == "embeddings":
            return self.server.embeddings_settings()
        if kind == "graph":
            return {"host": "127.0.0.1", "port": self.falkor.port, "password": self.falkor.password, "ssl": False}
        return self.pg_settings()

    def failure_settings(self, kind: str, failure: str) -> dict:
        good = self.success_settings(kind)
        if kind in ("llm", "embeddings"):
            port = {"refused": self.closed_port, "timeout": self.never.port, "silent": self.silent.port}.get(failure)
            if port:
                return {**good, "endpoint": f"http://127.0.0.1:{port}/v1"}
            if failure == "auth":
                return {**good, "api_key": "sk-wrong-key"}
            return {**good, "endpoint": self.https.base_url}
        port = {"refused": self.closed_port, "timeout": self.never.port, "silent": self.silent.port}.get(failure)
        if port:
            return {**good, "port": port}
        if failure == "auth":
            return {**good, "password": "wrong-password"}
        if kind == "graph":
            return {**good, "port": self.tls_redis.port, "ssl": True}
        return {**good, "port": self.tls_pg.port, "ssl_mode": "verify-full"}

    def env(self) -> dict[str, str]:
        """The CUSTOM_* variables of the success settings (for --once)."""
        out = {}
        for kind in KINDS:
            settings = self.success_settings(kind)
            for name, var in ENV[kind].items():
                value = settings[name]
                out[var] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def stop(self) -> None:
        for peer in self.started:
            with contextlib.suppress(Exception):
                (peer.stop if hasattr(peer, "stop") else peer.close)()
        with contextlib.suppress(Exception):
            import psycopg
            from psycopg import sql

            with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))
        if self.own_server and self.server is not None:
            self.server.stop()
        if self.own_falkor:
            self.falkor.stop()
        if self.own_pg:
            self.pg.discard()  # as root its data may be kept outside self.root (wizchat/embedded.py PG_HOME)
        shutil.rmtree(self.root, ignore_errors=True)


# -- measuring -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def bench_settings(peers: Peers):
    """The benchmark's timeouts, allow-list and trusted CA, whatever the process was configured with."""
    import ipaddress

    from django.test import override_settings

    with override_settings(BYOI_CONNECT_TIMEOUT=CONNECT_TIMEOUT, BYOI_OPERATION_TIMEOUT=OPERATION_TIMEOUT,
                           EGRESS_ALLOWED_NETWORKS=[ipaddress.ip_network("127.0.0.0/8")],
                           BYOI_CA_BUNDLE=str(peers.trusted_ca)):
        yield


def check_once(kind: str, settings: dict) -> tuple[float, list]:
    from byoi.checks import check_run

    started = time.perf_counter()
    results = check_run(kind, settings)
    return time.perf_counter() - started, results


def outcome(results: list) -> tuple[str, str]:
    """(code, step) of the first failed step, or ("ok", "")."""
    failed = next((r for r in results if r.status == "failed"), None)
    return (failed.code, failed.name) if failed else ("ok", "")


def bound(failure: str) -> float | None:
    """The issue's limit for a class: the configured timeout that applies plus one second."""
    if failure == "timeout":
        return CONNECT_TIMEOUT + 1
    if failure == "silent":  # connected: the login or the request is bounded by the larger of the two
        return max(CONNECT_TIMEOUT, OPERATION_TIMEOUT) + 1
    return None


def bench_failures(peers: Peers, runs: int, slow_runs: int) -> list[dict]:
    rows = []
    for kind in KINDS:
        check_once(kind, peers.success_settings(kind))  # warm-up: the kind's first check imports its modules
        for failure in CLASSES:
            settings = peers.failure_settings(kind, failure)
            n = slow_runs if failure in ("timeout", "silent") else runs
            times, codes = [], set()
            for _ in range(n):
                elapsed, results = check_once(kind, settings)
                times.append(elapsed)
                code, step = outcome(results)
                codes.add(f"{code} at {step}" if step else code)
            rows.append({"kind": kind, "family": FAMILY[kind], "failure": failure, "runs": n, "bound": bound(failure),
                         "reported": ", ".join(sorted(codes)), "median": statistics.median(times), "worst": max(times)})
            print(f"  {kind:13} {failure:8} {rows[-1]['reported']:28} median {rows[-1]['median'] * 1000:7.0f} ms  "
                  f"worst {rows[-1]['worst'] * 1000:7.0f} ms", flush=True)
    return rows


def baseline(kind: str, settings: dict) -> None:
    """The cheapest raw operation equivalent to the check of `kind` (a fresh client each time, as a check)."""
    if kind in ("llm", "embeddings"):
        import openai

        with openai.OpenAI(base_url=settings["endpoint"], api_key=settings["api_key"], max_retries=0,
                           timeout=OPERATION_TIMEOUT) as client:
            if kind == "llm":
                client.chat.completions.create(model=settings["model"], messages=CHECK_PROMPT, max_tokens=8,
                                               temperature=0)
            else:
                client.embeddings.create(model=settings["model"], input=["WizChat connection test"],
                                         dimensions=int(settings["dimensions"]))
    elif kind == "graph":
        import redis  # the connection class under the falkordb client (its constructor adds INFO probes)

        client = redis.Redis(host=settings["host"], port=int(settings["port"]), password=settings.get("password"),
                             socket_connect_timeout=CONNECT_TIMEOUT, protocol=2)
        try:
            client.ping()
        finally:
            client.close()
    else:
        import psycopg

        with psycopg.connect(host=settings["host"], port=int(settings["port"]), dbname=settings["database"],
                             user=settings["username"], password=settings["password"],
                             sslmode=settings.get("ssl_mode") or "require",
                             connect_timeout=int(CONNECT_TIMEOUT)) as conn:
            conn.execute("SELECT 1").fetchone()


def bench_success(peers: Peers, runs: int) -> list[dict]:
    rows = []
    for kind in KINDS:
        settings = peers.success_settings(kind)
        for _ in range(2):  # warm-up: imports, TLS contexts, the server's threads
            check_once(kind, settings)
            baseline(kind, settings)
        checks, bases, ratios, steps = [], [], [], {}
        for _ in range(runs):  # interleaved, so the shared machine's load drifts into both sides alike
            elapsed, results = check_once(kind, settings)
            if outcome(results)[0] != "ok":
                raise RuntimeError(f"The {kind} check failed against a healthy peer: {outcome(results)}")
            started = time.perf_counter()
            baseline(kind, settings)
            base = time.perf_counter() - started
            checks.append(elapsed)
            bases.append(base)
            ratios.append(elapsed / base)
            for r in results:
                steps.setdefault(r.name, []).append(r.ms)
        rows.append({"kind": kind, "runs": runs, "check_p50": statistics.median(checks), "check_p95": pct(checks, 95),
                     "base_p50": statistics.median(bases), "base_p95": pct(bases, 95),
                     "ratio": statistics.median(checks) / statistics.median(bases),
                     "pair_ratio_p50": statistics.median(ratios),
                     "steps": [(name, statistics.median(values)) for name, values in steps.items()]})
        r = rows[-1]
        print(f"  {kind:13} check p50 {r['check_p50'] * 1000:6.1f} ms p95 {r['check_p95'] * 1000:6.1f} ms | "
              f"baseline p50 {r['base_p50'] * 1000:5.1f} ms | ratio {r['ratio']:.1f}×", flush=True)
    return rows


def bench(peers: Peers, quick: bool = False) -> dict:
    """Both measurements against started peers (Django already set up)."""
    with bench_settings(peers):
        print("Test Connection failures…", flush=True)
        failures = bench_failures(peers, runs=3 if quick else 5, slow_runs=2 if quick else 3)
        print("Test Connection success vs raw operation…", flush=True)
        success = bench_success(peers, runs=8 if quick else 30)
    return {"failures": failures, "success": success, "connect_timeout": CONNECT_TIMEOUT,
            "operation_timeout": OPERATION_TIMEOUT}


# -- report --------------------------------------------------------------------------------------------------

def fmt_ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


CAUSES = {("graph", "silent"): "the FalkorDB client's socket timeout is the operation timeout + 5 s "
                               "(`client_kwargs` in byoi/backends/graph.py), and the PING of the auth step waits "
                               "for it"}

STEP_SHORT = {"address": "address", "tcp": "tcp", "tls": "tls", "auth": "auth", "version": "version",
              "permissions": "perm", "operation": "op"}


def report_lines(result: dict) -> list[str]:
    """The "Test Connection" section of docs/BENCHMARKS.md."""
    ct, ot = result["connect_timeout"], result["operation_timeout"]
    lines = [
        "## Test Connection",
        "",
        f"`bench/connection_tests.py`: every figure is `byoi.checks.check_run` (what the Celery task runs) on "
        f"customer settings (egress guard on, `EGRESS_ALLOWED_NETWORKS=127.0.0.0/8`), connect timeout "
        f"{ct:g} s, operation timeout {ot:g} s, peers on loopback started by the benchmark.",
        "",
        "### Time to report a failure",
        "",
        f"Target (issue 4): a closed port answers `refused` at once; an address that never answers answers "
        f"`timeout` within the configured timeout plus one second: {ct + 1:g} s when the TCP handshake never "
        f"completes, {max(ct, ot) + 1:g} s when the server connects and then stays silent (the operation "
        "timeout applies). Each kind's success check ran once first (imports) and is not counted.",
        "",
        "| kind (protocol) | failure | reported as (code at step) | median | worst | runs | limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["failures"]:
        limit = "" if row["bound"] is None else \
            f"≤ {row['bound']:g} s: {'met' if row['worst'] <= row['bound'] else '**not met**'}"
        lines.append(f"| {row['kind']} ({row['family']}) | {CLASS_LABELS[row['failure']]} | {row['reported']} | "
                     f"{fmt_ms(row['median'])} | {fmt_ms(row['worst'])} | {row['runs']} | {limit} |")
    over = [r for r in result["failures"] if r["bound"] is not None and r["worst"] > r["bound"]]
    lines += [
        "",
        "Peers: refused = a loopback port nobody listens on; timeout = a listening socket whose accept queue is "
        "full, so the kernel drops the SYN (a firewalled host); silent = a socket that completes the TCP "
        "handshake and never sends a byte (a hung server); auth = the right server with a wrong API key / "
        "password; tls = HTTPS (the OpenAI-protocol server), PostgreSQL (answers the SSL request with `S`, SSL "
        "Mode `verify-full`) and FalkorDB (SSL on) listeners whose certificate is signed by a CA other than the "
        "one in `BYOI_CA_BUNDLE`.",
        "",
        ("Over the limit: " + "; ".join(
            f"{r['kind']} {r['failure']} (worst {r['worst']:.1f} s, limit {r['bound']:g} s"
            + (f": {CAUSES[r['kind'], r['failure']]}" if (r["kind"], r["failure"]) in CAUSES else "") + ")"
            for r in over) + ".")
        if over else "Every timeout and silent case reported within its limit.",
        "",
        "### Cost of a successful check",
        "",
        "| kind | check p50 | check p95 | baseline p50 | baseline p95 | ratio (p50 / p50) | baseline operation |",
        "|---|---|---|---|---|---|---|",
    ]
    base_label = {"llm": "plain `openai` client, one chat completion (new client)",
                  "embeddings": "plain `openai` client, one embeddings call (new client)",
                  "vector_store": "`psycopg.connect` + `SELECT 1`",
                  "conversations": "`psycopg.connect` + `SELECT 1`",
                  "graph": "redis-py `PING` with the password (new connection)"}
    for row in result["success"]:
        lines.append(f"| {row['kind']} | {row['check_p50'] * 1000:.1f} ms | {row['check_p95'] * 1000:.1f} ms | "
                     f"{row['base_p50'] * 1000:.1f} ms | {row['base_p95'] * 1000:.1f} ms | {row['ratio']:.1f}× | "
                     f"{base_label[row['kind']]} |")
    runs = result["success"][0]["runs"] if result["success"] else 0
    lines += [
        "",
        f"{runs} runs per kind after 2 warm-ups, check and baseline alternating run by run against the same peer. "
        "A check does much more than its baseline: it resolves and checks the address, opens a TCP connection "
        "on its own, then logs in, and for the databases checks the version and pgvector, creates a probe table "
        "(HNSW index, insert, k-NN query; conversations: idempotent creation under the provisioning lock, "
        "write twice, read back), tests CREATE permission and drops the probe; FalkorDB: version from MODULE "
        "LIST, a probe graph written, read back and deleted; LLM/embeddings: GET /models then the real call.",
        "",
        "Median time per step (ms, whole milliseconds as stored in ConnectionTest.steps): " + "; ".join(
            f"{row['kind']}: " + ", ".join(f"{STEP_SHORT.get(n, n)} {v:g}" for n, v in row["steps"])
            for row in result["success"]) + ".",
        "",
    ]
    return lines


# -- whole-process mode --------------------------------------------------------------------------------------

def settings_from_env(kind: str) -> dict:
    settings = {name: os.environ[var] for name, var in ENV[kind].items() if var in os.environ}
    if "ssl" in settings:
        settings["ssl"] = settings["ssl"].lower() == "true"
    return settings


def once(kind: str, raw: bool) -> int:
    settings = settings_from_env(kind)
    if raw:
        baseline(kind, settings)
        return 0
    from bench.failure_times import setup

    setup()
    from byoi.envvars import env_to_settings

    _, results = check_once(kind, env_to_settings(os.environ)[kind])
    code, step = outcome(results)
    if code != "ok":
        print(f"{kind}: {code} at {step}", file=sys.stderr)
        return 1
    return 0


def serve(path: str) -> int:
    from bench.failure_times import setup

    setup()
    peers = Peers().start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        Path(path).write_text("".join(f"{k}={v}\n" for k, v in peers.env().items()))
        Path(path).chmod(0o600)
        print(f"Peers running; settings in {path}. Stop with SIGTERM or Ctrl-C.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        peers.stop()
        Path(path).unlink(missing_ok=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--kind", choices=KINDS)
    parser.add_argument("--once", action="store_true", help="one check of --kind with the CUSTOM_* settings")
    parser.add_argument("--baseline", action="store_true", help="with --once: the raw operation instead")
    parser.add_argument("--serve", metavar="FILE", help="start the peers and write their CUSTOM_* settings to FILE")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BASE))
    if args.once:
        if not args.kind:
            parser.error("--once needs --kind")
        return once(args.kind, args.baseline)
    if args.serve:
        return serve(args.serve)
    from bench.failure_times import setup

    setup()
    peers = Peers()
    try:
        peers.start()
        result = bench(peers, args.quick)
    finally:
        peers.stop()
    print("\n".join(report_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

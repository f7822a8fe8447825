"""How fast each failure class is reported, and what the egress guard costs per request.

  python -m bench.failure_times [--repeat N]

Runs against the OpenAI-protocol test server (tests/openai_server.py) on loopback; no database is needed.
Prints a markdown table: per failure class, the code WizChat reported and the median / worst time to
report it, next to the configured connect / operation timeouts. Then the median latency of one request
through netguard's pinned client against a plain httpx client, as a ratio (same server, same run).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
CONNECT_TIMEOUT, OPERATION_TIMEOUT = 2.0, 3.0


def setup() -> None:
    sys.path.insert(0, str(BASE))
    os.environ.update({"DJANGO_SETTINGS_MODULE": "wizchat.settings", "WIZCHAT_IGNORE_RUNTIME_ENV": "true",
                       "EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING",
                       "BYOI_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT), "BYOI_OPERATION_TIMEOUT": str(OPERATION_TIMEOUT)})
    import django

    django.setup()


def timed(call) -> tuple[str, float]:
    from byoi.backends.base import BackendError

    started = time.monotonic()
    try:
        call()
        code = "ok"
    except BackendError as error:
        code = error.code
    return code, time.monotonic() - started


class SilentListener:
    """A port that never answers (shared by bench.connection_tests).

    `accepting=False`: a listening socket whose one-slot accept queue is already full, so the kernel drops
    every new SYN and a connect attempt times out, as with a firewalled host. `accepting=True`: the kernel
    completes the TCP handshake and nothing is ever read or written, as with a hung server."""

    def __init__(self, accepting: bool = False):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=0 if not accepting else 64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        if not accepting:
            while True:  # fill the accept queue until a connect attempt is no longer answered
                filler = socket.socket()
                filler.settimeout(0.3)
                try:
                    filler.connect(("127.0.0.1", self.port))
                except OSError:
                    filler.close()
                    break
                self.held.append(filler)

    def close(self) -> None:
        for held in self.held:
            held.close()
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    setup()
    import httpx
    from django.conf import settings

    from byoi import netguard
    from byoi.backends.llm import OpenAICompatibleLLM
    from tests.openai_server import OpenAIServer
    from wizchat import embedded

    hello = [{"role": "user", "content": "Hello"}]
    server = OpenAIServer().start()
    silent = SilentListener()  # listens, its accept queue full: connecting times out

    def chat(settings_, mode="normal"):
        def call():
            server.mode = mode
            OpenAICompatibleLLM(settings_).chat(hello)
        return call

    def blocked():
        allowed = settings.EGRESS_ALLOWED_NETWORKS
        settings.EGRESS_ALLOWED_NETWORKS = []
        try:
            OpenAICompatibleLLM({"endpoint": "http://169.254.169.254/v1", "api_key": "k", "model": "m"}).chat(hello)
        finally:
            settings.EGRESS_ALLOWED_NETWORKS = allowed

    cases = [
        ("blocked address (metadata IP)", blocked),
        ("closed port", chat({"endpoint": f"http://127.0.0.1:{embedded.free_port()}/v1", "api_key": "k",
                              "model": "m"})),
        ("listening, never accepts", chat({"endpoint": f"http://127.0.0.1:{silent.port}/v1",
                                           "api_key": "k", "model": "m"})),
        ("accepts, never answers", chat(server.llm_settings(), "hang")),
        ("answer trickles in", chat(server.llm_settings(), "drip")),
        ("wrong API key", chat(server.llm_settings(api_key="sk-wrong"))),
        ("unknown model", chat(server.llm_settings(model="gpt-99"))),
        ("HTML page", chat(server.llm_settings(), "html")),
        ("redirect", chat(server.llm_settings(), "redirect")),
    ]
    print(f"Configured: connect timeout {CONNECT_TIMEOUT:g} s, operation timeout {OPERATION_TIMEOUT:g} s; "
          f"{args.repeat} runs each.\n")
    print("| failure | reported as | median | worst |")
    print("|---|---|---|---|")
    for label, call in cases:
        runs = [timed(call) for _ in range(args.repeat if "never" not in label and "trickles" not in label else 2)]
        codes = {code for code, _ in runs}
        times = [t for _, t in runs]
        print(f"| {label} | {', '.join(sorted(codes))} | {statistics.median(times) * 1000:.0f} ms | "
              f"{max(times) * 1000:.0f} ms |")
    server.mode = "normal"

    headers = {"Authorization": f"Bearer {server.api_key}"}

    def one(client) -> float:
        started = time.perf_counter()
        client.get(server.base_url + "/models", headers=headers)
        return time.perf_counter() - started

    # Alternating the two clients request by request keeps the shared machine's load out of the ratio.
    guarded = netguard.http_client(server.base_url, timeout_connect=CONNECT_TIMEOUT, timeout_read=OPERATION_TIMEOUT)
    plain = httpx.Client(timeout=OPERATION_TIMEOUT, trust_env=False)
    one(guarded), one(plain)
    g, p = zip(*[(one(guarded), one(plain)) for _ in range(400)], strict=True)
    print(f"\nGET /models on a kept-alive connection, median of 400 alternating: netguard client "
          f"{statistics.median(g) * 1e6:.0f} µs, plain httpx {statistics.median(p) * 1e6:.0f} µs, "
          f"ratio {statistics.median(g) / statistics.median(p):.2f}")

    def fresh(make) -> float:
        with make() as client:
            return one(client)

    def make_guarded():
        return netguard.http_client(server.base_url, timeout_connect=CONNECT_TIMEOUT, timeout_read=OPERATION_TIMEOUT)

    def make_plain():
        return httpx.Client(timeout=OPERATION_TIMEOUT, trust_env=False)

    g, p = zip(*[(fresh(make_guarded), fresh(make_plain)) for _ in range(100)], strict=True)
    print(f"GET /models with a new client and connection, median of 100 alternating: netguard "
          f"{statistics.median(g) * 1e6:.0f} µs, plain httpx {statistics.median(p) * 1e6:.0f} µs, "
          f"ratio {statistics.median(g) / statistics.median(p):.2f}")
    silent.close()
    server.stop()


if __name__ == "__main__":
    main()

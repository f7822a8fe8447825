"""A bounded loopback load, in a process of its own (so the client's threads share no interpreter lock with the
server under test nor with the OpenAI-protocol endpoint in the benchmark's process).

  python -m bench.load CONFIG_JSON   → prints one JSON line with the measured durations

CONFIG: {"mode": "pairs" | "load",
         "wizchat": {"url", "headers", "json" | "form", "cookies", "kind": "api" | "sse" | "plain" | "get"},
         "direct": {"url", "headers", "json", "kind": "api" | "plain"},
         "pairs": N (mode pairs), "warmup": N,
         "clients": N, "direct_clients": N, "seconds": S, "settle": S (mode load)}

pairs: one client, WizChat and the direct call alternating N times (after `warmup` of each): the overhead of each
pair is WizChat − direct. load: `clients` threads stream through WizChat back to back and `direct_clients` threads
stream straight to the endpoint, for `seconds` (requests started in the first `settle` seconds are not counted);
every thread stops by itself at the deadline and waits at most 30 s for its last answer."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class Failed(Exception):
    pass


def _request(client: httpx.Client, spec: dict) -> float:
    """One request read to its end; its duration in seconds. Raises Failed on a non-200 or an error event."""
    kind = spec.get("kind", "api")
    kwargs = {"headers": spec.get("headers") or {}}
    if kind == "get":
        start = time.perf_counter()
        response = client.get(spec["url"], **kwargs)
        if response.status_code != 200:
            raise Failed(f"HTTP {response.status_code}")
        return time.perf_counter() - start
    if "json" in spec:
        kwargs["json"] = spec["json"]
    else:
        kwargs["data"] = spec["form"]
    start = time.perf_counter()
    if kind == "plain":
        response = client.post(spec["url"], **kwargs)
        if response.status_code != 200 or not response.json().get("choices"):
            raise Failed(f"HTTP {response.status_code}")
        return time.perf_counter() - start
    with client.stream("POST", spec["url"], **kwargs) as response:
        if response.status_code != 200:
            response.read()
            raise Failed(f"HTTP {response.status_code}")
        done = False
        tokens = 0
        for line in response.iter_lines():
            if kind == "sse":
                if line.startswith("event: token"):
                    tokens += 1
                elif line.startswith("event: error"):
                    raise Failed("error event")
                elif line.startswith("event: done"):
                    done = True
            elif line.startswith("data: "):
                if line == "data: [DONE]":
                    done = True
                elif '"content"' in line:
                    tokens += 1
                elif '"error"' in line:
                    raise Failed("error chunk")
        if not done or not tokens:
            raise Failed("stream ended early")
    return time.perf_counter() - start


def _client(spec: dict) -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, cookies=spec.get("cookies") or {})


def pairs(config: dict) -> dict:
    w_spec, d_spec = config["wizchat"], config["direct"]
    w_client, d_client = _client(w_spec), _client(d_spec)
    for _ in range(config.get("warmup", 5)):
        _request(w_client, w_spec)
        _request(d_client, d_spec)
    over, wiz, direct = [], [], []
    for i in range(config["pairs"]):
        if i % 2:  # the order alternates, so neither side always runs on a just-woken CPU
            d = _request(d_client, d_spec)
            w = _request(w_client, w_spec)
        else:
            w = _request(w_client, w_spec)
            d = _request(d_client, d_spec)
        over.append(w - d)
        wiz.append(w)
        direct.append(d)
    return {"overhead": over, "wizchat": wiz, "direct": direct}


def load(config: dict) -> dict:
    seconds, settle = config["seconds"], config.get("settle", 1.0)
    begin = time.perf_counter()
    deadline = begin + seconds
    results = {"wizchat": [], "direct": []}
    errors: list[str] = []
    lock = threading.Lock()

    def worker(side: str, spec: dict):
        client = _client(spec)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    duration = _request(client, spec)
                except Exception as error:  # noqa: BLE001 - every failure is counted
                    with lock:
                        errors.append(f"{side}: {type(error).__name__}: {error}"[:200])
                    time.sleep(0.05)
                    continue
                if started - begin >= settle:
                    with lock:
                        results[side].append(duration)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=("wizchat", config["wizchat"]), daemon=True)
               for _ in range(config["clients"])]
    threads += [threading.Thread(target=worker, args=("direct", config["direct"]), daemon=True)
                for _ in range(config.get("direct_clients", 0))]
    for t in threads:
        t.start()
        time.sleep(0.005)  # the clients do not all knock in the same millisecond
    for t in threads:
        t.join(max(1.0, deadline + 35 - time.perf_counter()))
    return {**results, "errors": errors, "stuck": sum(t.is_alive() for t in threads)}


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    out = pairs(config) if config["mode"] == "pairs" else load(config)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

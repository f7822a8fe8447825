"""A bounded loopback load, in a process of its own (so the client's threads share no interpreter lock with the
server under test nor with the OpenAI-protocol endpoint in the benchmark's process).

  python -m bench.load CONFIG_JSON   → prints one JSON line with the measured durations

CONFIG: {"mode": "pairs" | "load" | "exchanges",
         "wizchat": {"url", "headers", "json" | "form", "cookies", "kind": "api" | "sse" | "plain" | "get"},
         "direct": {"url", "headers", "json", "kind": "api" | "plain"},
         "pairs": N (mode pairs), "warmup": N,
         "clients": N, "direct_clients": N, "seconds": S, "settle": S (mode load)}

pairs: one client, WizChat and the direct call alternating N times (after `warmup` of each): the overhead of each
pair is WizChat − direct. load: `clients` threads stream through WizChat back to back and `direct_clients` threads
stream straight to the endpoint, for `seconds` (requests started in the first `settle` seconds are not counted);
every thread stops by itself at the deadline and waits at most 30 s for its last answer. exchanges: as load,
WizChat only and every request kept: "{marker}" and "{conversation}" in its body become fresh hex ids per request,
and each exchange is returned with its marker, conversation id, time to first token, total time, what the server
said it stored — or its error — so that a test can count the rows each exchange left."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class Failed(Exception):
    pass


def _request(client: httpx.Client, spec: dict) -> float:
    """One request read to its end; its duration in seconds. Raises Failed on a non-200 or an error event."""
    return _exchange(client, spec)["total"]


def _exchange(client: httpx.Client, spec: dict) -> dict:
    """One request read to its end: {"ttft", "total"} in seconds (ttft: until the first non-empty token; the total
    for a plain answer) and, from a stream, the "conversation_id" and "stored" outcome the server reported. Raises
    Failed on a non-200, an error event or chunk, or a stream that ended before its done event."""
    kind = spec.get("kind", "api")
    kwargs = {"headers": spec.get("headers") or {}}
    if kind == "get":
        start = time.perf_counter()
        response = client.get(spec["url"], **kwargs)
        if response.status_code != 200:
            raise Failed(f"HTTP {response.status_code}")
        total = time.perf_counter() - start
        return {"ttft": total, "total": total}
    if "json" in spec:
        kwargs["json"] = spec["json"]
    else:
        kwargs["data"] = spec["form"]
    start = time.perf_counter()
    if kind == "plain":
        response = client.post(spec["url"], **kwargs)
        if response.status_code != 200 or not response.json().get("choices"):
            raise Failed(f"HTTP {response.status_code}: {response.text[:150]}")
        total = time.perf_counter() - start
        extension = response.json().get("wizchat") or {}
        return {"ttft": total, "total": total, "conversation_id": extension.get("conversation_id"),
                "stored": extension.get("stored")}
    out: dict = {"ttft": None}
    with client.stream("POST", spec["url"], **kwargs) as response:
        if response.status_code != 200:
            response.read()
            raise Failed(f"HTTP {response.status_code}: {response.text[:150]}")
        done = False
        tokens = 0
        event = ""
        for line in response.iter_lines():
            if kind == "sse":
                if line.startswith("event: "):
                    event = line[7:].strip()
                    if event == "token":
                        tokens += 1
                        if out["ttft"] is None:
                            out["ttft"] = time.perf_counter() - start
                    elif event == "done":
                        done = True
                elif line.startswith("data: ") and event in ("meta", "done", "error"):
                    data = _json(line[6:])
                    if event == "error":
                        raise Failed(f"error event: {data.get('code', '')} {data.get('message', '')}".strip())
                    out["conversation_id"] = data.get("conversation_id", out.get("conversation_id"))
                    if event == "done":
                        out["stored"] = data.get("stored")
            elif line.startswith("data: "):
                if line == "data: [DONE]":
                    done = True
                    continue
                chunk = _json(line[6:])
                if "error" in chunk:
                    raise Failed(f"error chunk: {(chunk['error'] or {}).get('message', '')}")
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        tokens += 1
                        if out["ttft"] is None:
                            out["ttft"] = time.perf_counter() - start
                extension = chunk.get("wizchat") or {}
                if "stored" in extension:
                    out["stored"] = extension["stored"]
                if extension.get("conversation_id"):
                    out["conversation_id"] = extension["conversation_id"]
        if not done or not tokens:
            raise Failed("stream ended early")
    out["total"] = time.perf_counter() - start
    return out


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise Failed(f"not JSON: {text[:80]}") from None
    return value if isinstance(value, dict) else {}


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


def _filled(spec: dict, marker: str, conversation: str) -> dict:
    """The spec with "{marker}" and "{conversation}" in its body replaced (hex ids: nothing to escape)."""
    body = "json" if "json" in spec else "form"
    text = json.dumps(spec[body]).replace("{marker}", marker).replace("{conversation}", conversation)
    return {**spec, body: json.loads(text)}


def exchanges(config: dict) -> dict:
    spec, seconds = config["wizchat"], config["seconds"]
    begin = time.perf_counter()
    deadline = begin + seconds
    records: list[dict] = []
    lock = threading.Lock()

    def worker(n: int):
        client = _client(spec)
        try:
            while time.perf_counter() < deadline:
                marker, conversation = uuid.uuid4().hex, uuid.uuid4().hex
                record = {"client": n, "marker": marker, "sent_conversation": conversation,
                          "at": round(time.perf_counter() - begin, 3)}
                try:
                    record.update(_exchange(client, _filled(spec, marker, conversation)))
                except Exception as error:  # noqa: BLE001 - every failure is counted
                    record["error"] = f"{type(error).__name__}: {error}"[:200]
                with lock:
                    records.append(record)
                if "error" in record:
                    time.sleep(0.05)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(config["clients"])]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join(max(1.0, deadline + 35 - time.perf_counter()))
    with lock:
        return {"exchanges": list(records), "stuck": sum(t.is_alive() for t in threads), "seconds": seconds,
                "elapsed": time.perf_counter() - begin}


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    out = {"pairs": pairs, "load": load, "exchanges": exchanges}[config["mode"]](config)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared by the fault tests (tests/test_faults_*.py, tests/test_tenant_isolation.py): the `fault_record` fixture
that prints each measured case and appends it to test-artifacts/faults.jsonl (git-ignored), from which
`python -m bench.faults_table` renders the fault matrix of docs/FAULTS.md."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ARTIFACT = Path(__file__).resolve().parent.parent / "test-artifacts" / "faults.jsonl"


@pytest.fixture
def fault_record(request):
    """fault_record(peer, failure, activity, code, seconds, lost=0, **extra): one measured case."""

    def record(peer: str, failure: str, activity: str, code: str, seconds: float, lost: int | None = 0,
               **extra) -> None:
        row = {"test": request.node.nodeid, "peer": peer, "failure": failure, "activity": activity, "code": code,
               "seconds": round(seconds, 2), "lost": lost, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
        print(f"FAULT {peer} | {failure} | {activity} -> {code} in {seconds:.2f} s, lost {lost}")
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        with ARTIFACT.open("a") as out:
            out.write(json.dumps(row) + "\n")

    return record


# --- a chatbot whose one customer component runs behind a FaultProxy --------------------------------------

KINDS = ("conversations", "vector_store", "graph", "llm", "embeddings")
FAILURES = {"stopped": "refuse", "silent from the start": "silent", "silent after working": "silent"}
EXPECTED_CODE = {"stopped": "refused", "silent from the start": "timeout", "silent after working": "timeout"}
CONNECT, OPERATION, COOLDOWN = 1.0, 2.0, 0.5
LIBPQ_CONNECT = 2.0  # libpq waits whole seconds, at least 2
PG_KINDS = ("conversations", "vector_store")


def report_bound(kind: str, failure: str) -> float:
    """The timeout a failure is promised to be reported within (the test allows 1 s more)."""
    if failure == "stopped":
        return CONNECT
    if failure == "silent from the start" and kind in PG_KINDS:
        return LIBPQ_CONNECT  # libpq's connect timeout covers the handshake
    return OPERATION


@pytest.fixture
def fault_settings(settings, openai_server):
    """Short timeouts and cool-down; WizChat's default LLM is the OpenAI-protocol test server."""
    from byoi import resolver

    settings.BYOI_CONNECT_TIMEOUT, settings.BYOI_OPERATION_TIMEOUT = CONNECT, OPERATION
    settings.BYOI_BREAKER_COOLDOWN = COOLDOWN
    openai_server.as_default_llm(settings)
    yield settings
    resolver.clear_cache()


@pytest.fixture
def behind_proxy(request, fault_settings, openai_server):
    """behind_proxy(chatbot, kind) -> FaultProxy: the chatbot's `kind` is the customer's own, reached through a
    proxy (forwarding) to a real peer: the customer's PostgreSQL, their FalkorDB, or the OpenAI-protocol server."""
    from byoi.services import byoi_set_enabled, component_save
    from tests.fault_proxy import FaultProxy
    from tests.peers import PEERS

    proxies = []

    def make(chatbot, kind: str) -> FaultProxy:
        if kind in PG_KINDS:
            db = request.getfixturevalue("customer_db")
            proxy = FaultProxy(PEERS.customer_pg.port)
            component_save(chatbot, kind, values={**db, "port": proxy.port}, secrets={"password": db["password"]})
        elif kind == "graph":
            falkor = request.getfixturevalue("customer_falkor")
            proxy = FaultProxy(falkor.port)
            component_save(chatbot, kind, values={"host": "127.0.0.1", "port": proxy.port, "ssl": False},
                           secrets={"password": falkor.password})
        else:
            proxy = FaultProxy(openai_server.port)
            endpoint = f"http://127.0.0.1:{proxy.port}/v1"
            values = (openai_server.llm_settings(endpoint=endpoint) if kind == "llm" else
                      openai_server.embeddings_settings(endpoint=endpoint, model="text-embedding-3-small",
                                                        dimensions=64))
            secret = values.pop("api_key")
            component_save(chatbot, kind, values=values, secrets={"api_key": secret})
        byoi_set_enabled(chatbot, True)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()

"""A host that never answers reports `timeout` within the configured timeout plus one second, for every
database-like kind (the HTTP kinds are covered in test_check_llm / test_netguard)."""

import time

import pytest

from bench.failure_times import SilentListener
from byoi.checks import check_run

CONNECT, OPERATION = 1.0, 2.0
SETTINGS = {
    "vector_store": {"database": "db", "username": "u", "password": "p", "ssl_mode": "disable"},
    "conversations": {"database": "db", "username": "u", "password": "p", "ssl_mode": "disable"},
    "graph": {"password": "p", "ssl": False},
}


@pytest.fixture(autouse=True)
def short_timeouts(settings):
    settings.BYOI_CONNECT_TIMEOUT = CONNECT
    settings.BYOI_OPERATION_TIMEOUT = OPERATION


@pytest.mark.parametrize("accepting", [False, True], ids=["never-accepts", "accepts-then-silent"])
@pytest.mark.parametrize("kind", list(SETTINGS))
def test_it_reports_timeout_within_the_configured_timeout_plus_one_second(kind, accepting):
    listener = SilentListener(accepting=accepting)
    try:
        started = time.monotonic()
        results = check_run(kind, {"host": "127.0.0.1", "port": listener.port, **SETTINGS[kind]})
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    failed = [r for r in results if r.status == "failed"]
    assert [r.code for r in failed] == ["timeout"]
    assert elapsed < max(CONNECT, OPERATION) + 1.0

"""Issue 16's bounded load on the public API: 20 clients stream chat completions back to back for
WIZCHAT_LOAD_SECONDS through gunicorn as `make run` serves it, with an API key, on the default stack. Each request
names a new conversation (without one the API is stateless and stores nothing). 0 errors, every question and
answer stored exactly once; p50/p95 reported (tests/load_harness.py)."""

from __future__ import annotations

import pytest

from chatbots.apikeys import apikey_create
from tests.load_harness import (
    QUESTION,
    SECONDS,
    assert_exactly_once,
    load_env,  # noqa: F401 - fixture
    loaded_chatbot,
    report,
    run_exchanges,
    start_web_server,
    wait_stored,
)
from wizchat import embedded

pytestmark = pytest.mark.django_db(transaction=True)


def api_spec(base: str, key: str, slug: str) -> dict:
    return {"url": f"{base}/v1/chat/completions", "headers": {"Authorization": f"Bearer {key}"}, "kind": "api",
            "json": {"model": slug, "stream": True, "conversation_id": "{conversation}",
                     "messages": [{"role": "user", "content": QUESTION}]}}


def test_twenty_api_streams_through_gunicorn_lose_nothing_and_fail_none(make_user, load_env, tmp_path):  # noqa: F811
    _, chatbot = loaded_chatbot(make_user)
    _, key = apikey_create(chatbot, "load")
    proc, base = start_web_server(load_env, tmp_path / "gunicorn.log")
    try:
        result = run_exchanges(api_spec(base, key, chatbot.slug))
    finally:
        embedded.stop_process(proc, 70)
    messages = wait_stored(chatbot, 2 * len(result["exchanges"]))
    report("api_stream", result, messages, tmp_path)
    assert_exactly_once(result, messages)


BURST_CLIENTS = 40


def test_forty_parallel_posts_through_gunicorn_get_no_connection_reset(make_user, load_env, tmp_path):  # noqa: F811
    """The original finding: under 40 parallel POSTs Django's development server reset 1–3 connections per burst.
    40 clients post (non-streaming, a new connection each time) back to back for a third of the load's duration:
    every one answered and stored."""
    _, chatbot = loaded_chatbot(make_user)
    _, key = apikey_create(chatbot, "load")
    proc, base = start_web_server(load_env, tmp_path / "gunicorn.log")
    try:
        spec = api_spec(base, key, chatbot.slug)
        # A new connection for every request, as the bursts of the finding: each one goes through accept().
        spec.update(kind="plain", json={**spec["json"], "stream": False},
                    headers={**spec["headers"], "Connection": "close"})
        result = run_exchanges(spec, clients=BURST_CLIENTS, seconds=max(5.0, SECONDS / 3))
    finally:
        embedded.stop_process(proc, 70)
    messages = wait_stored(chatbot, 2 * len(result["exchanges"]))
    report("api_plain_40", result, messages, tmp_path, clients=BURST_CLIENTS)
    assert_exactly_once(result, messages, minimum=BURST_CLIENTS)

"""Issue 16's bounded load on the public API: 20 clients stream chat completions back to back for
WIZCHAT_LOAD_SECONDS through gunicorn as `make run` serves it, with an API key, on the default stack. Each request
names a new conversation (without one the API is stateless and stores nothing). 0 errors, every question and
answer stored exactly once; p50/p95 reported (tests/load_harness.py)."""

from __future__ import annotations

import pytest

from chatbots.apikeys import apikey_create
from tests.load_harness import (
    QUESTION,
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

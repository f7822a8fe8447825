"""Issue 16's bounded load on the dashboard's streaming chat: 20 logged-in clients stream answers (server-sent
events) back to back for WIZCHAT_LOAD_SECONDS through gunicorn as `make run` serves it, on the default stack.
0 errors, every question and answer stored exactly once; p50/p95 reported (tests/load_harness.py)."""

from __future__ import annotations

import pytest

from bench.serving import login
from tests.load_harness import (
    PASSWORD,
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


def test_twenty_streaming_chats_through_gunicorn_lose_nothing_and_fail_none(make_user, load_env, tmp_path):  # noqa: F811
    user, chatbot = loaded_chatbot(make_user)
    proc, base = start_web_server(load_env, tmp_path / "gunicorn.log")
    try:
        session = login(base, user.email, PASSWORD)
        result = run_exchanges({
            "url": f"{base}/dashboard/chatbots/{chatbot.id}/chat/", "form": {"question": QUESTION},
            "headers": {"Accept": "text/event-stream", "X-CSRFToken": session["csrf"], "Referer": f"{base}/"},
            "cookies": session["cookies"], "kind": "sse"})
    finally:
        embedded.stop_process(proc, 70)
    messages = wait_stored(chatbot, 2 * len(result["exchanges"]))
    report("dashboard_sse", result, messages, tmp_path)
    assert_exactly_once(result, messages)

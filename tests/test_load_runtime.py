"""Issue 16's bounded load on a deployed runtime: the chatbot is deployed to this machine through the real path
(deployment_create → the supervisor `make run` runs, `manage.py deployments_supervise`, a process of its own →
`python -m wizchat.runtime` behind its stable port), then 20 clients stream chat completions back to back for
WIZCHAT_LOAD_SECONDS with an API key, each in a new conversation. The runtime stores conversations in WizChat's
default store (or its outbox, which must have drained before counting): 0 errors, every question and answer
stored exactly once; p50/p95 reported (tests/load_harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from chatbots.apikeys import apikey_create
from chatbots.deployments import deployment_create
from tests.load_harness import (
    assert_exactly_once,
    load_env,  # noqa: F401 - fixture
    loaded_chatbot,
    outbox_waiting,
    report,
    run_exchanges,
    start_supervisor,
    wait_stored,
)
from tests.test_deployments import wait_status
from tests.test_load_api import api_spec
from wizchat import embedded

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_api_streams_on_a_deployed_runtime_lose_nothing_and_fail_none(make_user, load_env, tmp_path):  # noqa: F811
    _, chatbot = loaded_chatbot(make_user)
    _, key = apikey_create(chatbot, "load")
    supervisor = start_supervisor(load_env, tmp_path / "supervisor.log")
    # Where the supervisor gives the runtime its state folder (chatbots.supervisor.Supervisor._spawn).
    outbox = Path(settings.STATE_DIR) / "deployments" / str(chatbot.id) / "state" / "outbox.sqlite3"
    try:
        deployment_create(chatbot, "local")
        deployment = wait_status(chatbot, "running", timeout=120)
        assert set(deployment.carries.values()) == {"default"}
        result = run_exchanges(api_spec(deployment.url, key, chatbot.slug))
        messages = wait_stored(chatbot, 2 * len(result["exchanges"]), outbox=outbox)
        waiting = outbox_waiting(outbox)
    finally:
        embedded.stop_process(supervisor, 90)
    report("runtime_api_stream", result, messages, tmp_path, {"outbox_waiting": waiting})
    assert waiting == 0
    assert_exactly_once(result, messages)

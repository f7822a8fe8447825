"""The fault matrix, during a deploy (the local target: the supervisor `make run` runs, a runtime process per
chatbot) and while a deployed runtime serves: each customer component (their PostgreSQL as vector store and as
conversations store, their FalkorDB, their LLM and embeddings endpoints) stopped or silent.

- From the start: the component fails before the first deploy. The new runtime's /readyz names it with the
  taxonomy's code within the timeout + 1 s of the runtime listening, the deployment page says so while it waits
  (nothing is switched to a runtime that cannot serve), and it switches by itself once the component answers.
- After working: a deployed runtime serves; the component fails. A chat through the runtime reports the code
  within its bound (the conversations store: answers anyway and queues the exchange) and works again once the
  component is back, the runtime not restarted. A redeploy meanwhile reports the code while the previous runtime
  keeps serving, and switches once the component is back. Nothing is lost: every exchange reaches the customer's
  conversations database once.

Nothing of WizChat is restarted: the supervisor thread and the runtimes run throughout."""

from __future__ import annotations

import time
import urllib.request
import uuid

import httpx
import pytest

from byoi.registry import label
from chatbots.apikeys import apikey_create
from chatbots.deployments import deployment_create
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import Deployment
from tests.faults import COOLDOWN, EXPECTED_CODE, KINDS, report_bound
from tests.test_deployments import supervisor, wait_status  # noqa: F401 - the supervisor fixture
from tests.test_faults_chat import QUESTION, TEXT, customer_messages

pytestmark = pytest.mark.django_db(transaction=True)
MODES = {"stopped": "refuse", "silent": "silent"}


def listening(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def deploy_and_watch(sup, chatbot, code: str, timeout: float = 60) -> dict:
    """Deploy; follow the new runtime until the deployment names the failing component. Returns the moments
    (monotonic) the deploy was asked, the new runtime listened and the code was on the deployment."""
    asked = time.monotonic()
    deployment = deployment_create(chatbot, "local")
    heard = None
    deadline = asked + timeout
    while time.monotonic() < deadline:
        entry = sup.entries.get(deployment.id)
        pending = entry.pending if entry else None
        if heard is None and pending is not None and listening(pending.port):
            heard = time.monotonic()
        row = Deployment.objects.get(pk=deployment.pk)
        if f": {code}" in row.reason:
            return {"asked": asked, "listening": heard or time.monotonic(), "reported": time.monotonic(),
                    "deployment": row, "entry": entry}
        time.sleep(0.05)
    raise AssertionError(f"the deployment never named the failure: {row.status} {row.reason!r}")


def readiness_code(url: str, kind: str, timeout: float = 15, ok: bool = False) -> str | None:
    """The code /readyz gives the component once its last "ready" answer (kept 5 s) has expired; with `ok`, None
    once the component answers again (its last code if it never does)."""
    deadline = time.monotonic() + timeout
    code = None
    while time.monotonic() < deadline:
        entry = httpx.get(f"{url}/readyz", timeout=10).json()["components"][kind]
        code = None if entry["ok"] else entry["code"]
        if (code is None) == ok:
            return code
        time.sleep(0.2)
    return code if ok else None


def ask(url: str, key: str, slug: str, conversation: str) -> tuple[int, dict, float]:
    """A chat through the public API, the exchange stored in `conversation`: (status, body, seconds)."""
    body = {"model": slug, "messages": [{"role": "user", "content": QUESTION}], "conversation_id": conversation}
    headers = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    return response.status_code, response.json(), time.monotonic() - started


@pytest.mark.parametrize("failure", list(MODES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_deploy_names_a_failing_component_keeps_the_previous_runtime_serving_and_recovers(
        request, chatbot, behind_proxy, supervisor, openai_server, kind, failure, fault_record):  # noqa: F811
    proxy = behind_proxy(chatbot, kind)
    chatbot.chunk_size, chatbot.chunk_overlap = 200, 0
    chatbot.save()
    document, _ = document_add(chatbot, title="Wombatrix", text=TEXT, queue=False)
    assert document_ingest(document.id).status == "done"
    _, key = apikey_create(chatbot, "tests")
    start_failure, late_failure = ("stopped", "stopped") if failure == "stopped" else (
        "silent from the start", "silent after working")
    bound = report_bound(kind, "silent from the start" if failure == "silent" else "stopped")

    # 1. The component fails before the first deploy: the deployment waits and says why — except for the
    # conversations database, which the runtime serves without (the exchanges wait in its outbox): it switches,
    # and the deployment says it started while that database failed.
    proxy.set(MODES[failure])
    seen = deploy_and_watch(supervisor, chatbot, EXPECTED_CODE[start_failure])
    row = seen["deployment"]
    assert label(kind) in row.reason
    assert "previous runtime" not in row.reason  # there is none
    if kind == "conversations":
        assert row.status == "running" and row.reason.startswith("Started while Conversations: ")
        assert httpx.get(f"{row.url}/healthz", timeout=5).status_code == 200  # switched to it
    else:
        assert row.status == "starting"
        assert httpx.get(f"{row.url}/healthz", timeout=5).status_code == 503  # nothing switched to it
    seconds = seen["reported"] - seen["listening"]
    assert seconds < bound + 1
    proxy.forward()
    back = time.monotonic()
    row = wait_status(chatbot, "running", timeout=30)
    fault_record(kind, start_failure, "deploy", EXPECTED_CODE[start_failure], seconds, 0,
                 after_deploy=round(seen["reported"] - seen["asked"], 2),
                 switched_after_return=round(time.monotonic() - back, 2))
    runtime_pid = supervisor.entries[row.id].current.process.pid
    if kind == "conversations":  # serving all along: wait until it finds the database back (its breaker's probe)
        assert readiness_code(row.url, kind, ok=True) is None

    # 2. It fails while the runtime serves: a chat reports it, and works again once it is back.
    conversation = str(uuid.uuid4())
    status, first, _ = ask(row.url, key, chatbot.slug, conversation)
    assert status == 200 and first["choices"][0]["message"]["content"] == openai_server.reply
    assert first["wizchat"]["stored"] == "stored"
    exchanges = 1
    proxy.set(MODES[failure])
    status, body, seconds = ask(row.url, key, chatbot.slug, conversation)
    exchanges += 1
    if kind == "conversations":
        assert status == 200 and body["wizchat"]["stored"] == "queued"  # answered anyway
        code = readiness_code(row.url, kind)  # the chat does not fail: the runtime's readiness names it
    else:
        assert status == 503, body
        code = body["error"]["code"]
    assert code == EXPECTED_CODE[late_failure]
    assert seconds < report_bound(kind, late_failure) + 1
    proxy.forward()
    back = time.monotonic()
    deadline = back + 20  # the breaker's cool-down, doubled by each failed probe of /readyz meanwhile
    while True:
        time.sleep(COOLDOWN + 0.1)
        status, again, _ = ask(row.url, key, chatbot.slug, conversation)
        exchanges += 1
        # the conversations store: stored (the queued exchanges went first), no longer queued
        if status == 200 and again["wizchat"]["stored"] == "stored" or time.monotonic() > deadline:
            break
    assert status == 200 and again["choices"][0]["message"]["content"] == openai_server.reply
    assert again["wizchat"]["stored"] == "stored"
    assert supervisor.entries[row.id].current.process.pid == runtime_pid  # the same runtime
    fault_record(kind, late_failure, "chat (deployed runtime)", code, seconds, 0,
                 works_again_after=round(time.monotonic() - back, 2))

    # 3. A redeploy while it fails: reported, the previous runtime keeps serving, switched once it is back (the
    # conversations database: switched at once, and the exchanges of the new runtime wait in its outbox).
    proxy.set(MODES[failure])
    seen = deploy_and_watch(supervisor, chatbot, EXPECTED_CODE[start_failure])
    assert label(kind) in seen["deployment"].reason
    if kind == "conversations":
        assert seen["deployment"].status == "running"
        status, queued, _ = ask(row.url, key, chatbot.slug, conversation)
        exchanges += 1
        assert status == 200 and queued["wizchat"]["stored"] == "queued"
        assert supervisor.entries[row.id].current.process.pid != runtime_pid  # the new runtime answered it
    else:
        assert seen["deployment"].status == "starting"
        assert "The previous runtime keeps serving." in seen["deployment"].reason
        assert seen["entry"].current.process.pid == runtime_pid
        assert httpx.get(f"{row.url}/healthz", timeout=5).status_code == 200  # the previous runtime answers
    redeploy_seconds = seen["reported"] - seen["listening"]
    assert redeploy_seconds < bound + 1
    proxy.forward()
    back = time.monotonic()
    row = wait_status(chatbot, "running", timeout=30, generation=seen["deployment"].generation)
    switched = time.monotonic() - back
    assert supervisor.entries[row.id].current.process.pid != runtime_pid
    status, last, _ = ask(row.url, key, chatbot.slug, conversation)
    exchanges += 1
    if kind == "conversations":  # the next exchange goes once the new runtime's breaker lets it try again
        deadline = time.monotonic() + 20
        while last["wizchat"]["stored"] != "stored" and time.monotonic() < deadline:
            time.sleep(COOLDOWN + 0.1)
            status, last, _ = ask(row.url, key, chatbot.slug, conversation)
            exchanges += 1
    assert status == 200 and last["choices"][0]["message"]["content"] == openai_server.reply
    lost = 0
    if kind == "conversations":
        lost = 2 * exchanges - customer_messages(request.getfixturevalue("customer_db"), chatbot)
    fault_record(kind, f"{late_failure} (redeploy)", "deploy", EXPECTED_CODE[start_failure], redeploy_seconds,
                 lost, after_deploy=round(seen["reported"] - seen["asked"], 2),
                 switched_after_return=round(switched, 2))
    assert lost == 0

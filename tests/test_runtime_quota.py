"""A deployed runtime counts the plan's monthly message quota: it counts each exchange in its state folder, reports
the counts to the platform (/internal/runtimes/usage, authenticated by the deployment's platform token) on a
thread of its own, and refuses with the platform's "quota" error once the account's month is used up. Real peers:
a runtime process, the platform as pytest-django's live server behind a proxy the tests can cut."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest
from django.utils import timezone

from chatbots.apikeys import apikey_create
from chatbots.deployments import deployment_create, deployment_env, platform_token
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import RuntimeUsageCursor
from conversations.models import MessageUsage
from tests.fault_proxy import FaultProxy
from tests.peers import PEERS
from tests.test_data_residency import QUESTION, TEXT, byoi_chatbot, conversations_db  # noqa: F401
from tests.test_runtime import _base_env, start_runtime, wait_ready
from wizchat import embedded
from wizchat.plans import PlanLimitReached
from wizchat.runtime import usage as runtime_usage
from wizchat.runtime.usage import ReportFailed, RuntimeUsage

pytestmark = pytest.mark.django_db(transaction=True)
INTERVAL = 0.5  # WIZCHAT_USAGE_REPORT_SECONDS in these tests


def used(account) -> int:
    row = MessageUsage.objects.filter(account=account, month=timezone.now().date().replace(day=1)).first()
    return row.messages if row else 0


def wait_used(account, expected: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if used(account) == expected:
            return expected
        time.sleep(0.1)
    return used(account)


def month() -> str:
    return timezone.now().strftime("%Y-%m")


@pytest.fixture
def platform(live_server):
    """The platform as a runtime reaches it: the live server behind a proxy that a test can cut."""
    with FaultProxy(live_server.thread.port) as proxy:
        yield proxy


@pytest.fixture
def deployed_chatbot(byoi_chatbot, platform, settings):  # noqa: F811
    settings.DEPLOY_PLATFORM_URL = f"http://127.0.0.1:{platform.port}"
    document, _ = document_add(byoi_chatbot, title="Residency", text=TEXT, queue=False)
    document_ingest(document.id)
    deployment_create(byoi_chatbot)  # a deployment row: no supervisor runs here, the tests start the runtime
    return byoi_chatbot


@pytest.fixture
def runtime(deployed_chatbot, tmp_path):
    """Starts the chatbot's runtime (again: same state folder, same port) and stops it at the end."""
    _, key = apikey_create(deployed_chatbot, "tests")
    env = {**_base_env(tmp_path), **deployment_env(deployed_chatbot), "WIZCHAT_USAGE_REPORT_SECONDS": str(INTERVAL)}
    port = int(env["WIZCHAT_RUNTIME_PORT"])
    procs = []

    def start():
        procs.append(start_runtime(env, tmp_path / "runtime.log"))
        wait_ready(port, procs[-1], tmp_path / "runtime.log")
        return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)

    def stop():
        embedded.stop_process(procs[-1])

    yield {"start": start, "stop": stop, "env": env, "chatbot": deployed_chatbot, "procs": procs}
    for proc in procs:
        embedded.stop_process(proc)


def ask(client, chatbot):
    return client.chat.completions.create(model=chatbot.slug, messages=[{"role": "user", "content": QUESTION}])


def post_report(live_server, body, token: str | None, method: str = "POST") -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-WizChat-Platform-Token"] = token
    request = urllib.request.Request(f"{live_server.url}/internal/runtimes/usage", method=method,  # noqa: S310
                                     headers=headers, data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the live server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


# --- through a runtime ------------------------------------------------------------------------------------------


def test_a_runtimes_api_exchanges_show_up_in_the_accounts_message_usage(runtime):
    client = runtime["start"]()
    for _ in range(3):
        ask(client, runtime["chatbot"])
    assert wait_used(runtime["chatbot"].account, 3) == 3


def test_a_runtime_refuses_with_429_quota_once_the_plans_month_is_used_up(runtime):
    plan = runtime["chatbot"].account.plan
    plan.max_messages_per_month = 2
    plan.save()
    client = runtime["start"]()
    time.sleep(3 * INTERVAL)  # the runtime has heard the limit
    ask(client, runtime["chatbot"])
    ask(client, runtime["chatbot"])
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, runtime["chatbot"])  # refused at once, before any report: it counts locally
    assert caught.value.type == "insufficient_quota"
    assert "plan allows 2 messages a month" in caught.value.body["message"]
    assert 0 < int(caught.value.response.headers["Retry-After"]) <= 31 * 86400
    assert wait_used(runtime["chatbot"].account, 2) == 2


def test_a_month_used_up_on_the_platform_stops_the_runtime_within_the_reporting_interval(runtime):
    client = runtime["start"]()
    ask(client, runtime["chatbot"])
    account = runtime["chatbot"].account
    MessageUsage.objects.update_or_create(account=account, month=timezone.now().date().replace(day=1),
                                          defaults={"messages": account.plan.max_messages_per_month})
    deadline = time.monotonic() + 4 * INTERVAL + 2
    refused = None
    while refused is None and time.monotonic() < deadline:
        try:
            ask(client, runtime["chatbot"])
        except openai.RateLimitError as error:
            refused = error
        time.sleep(INTERVAL / 5)
    assert refused is not None and refused.type == "insufficient_quota"


def test_a_runtime_of_own_components_pauses_when_the_plan_loses_byoi_and_resumes_when_it_is_back(runtime):
    from wizchat.models import Plan

    client = runtime["start"]()
    ask(client, runtime["chatbot"])
    account = runtime["chatbot"].account
    paid = account.plan
    account.plan = Plan.objects.get(slug="free")
    account.save()
    deadline = time.monotonic() + 4 * INTERVAL + 2
    refused = None
    while refused is None and time.monotonic() < deadline:  # the next report's answer tells the runtime
        try:
            ask(client, runtime["chatbot"])
        except openai.APIStatusError as error:
            refused = error
        time.sleep(INTERVAL / 5)
    assert refused is not None and refused.status_code == 502, refused
    assert "BYOI is paused: the Free plan does not include BYOI" in refused.body["message"]
    assert refused.body["code"] == "unavailable"  # never answered on WizChat's defaults instead
    account.plan = paid
    account.save()
    deadline = time.monotonic() + 4 * INTERVAL + 2
    while True:
        try:
            answer = ask(client, runtime["chatbot"])
            break
        except openai.APIStatusError:
            assert time.monotonic() < deadline, "the runtime did not resume once the plan included BYOI again"
            time.sleep(INTERVAL / 5)
    assert answer.choices[0].message.content


def test_an_unreachable_platform_does_not_stop_the_runtime_and_the_counts_arrive_once_it_is_back(runtime, platform):
    platform.refuse()
    client = runtime["start"]()
    ask(client, runtime["chatbot"])
    ask(client, runtime["chatbot"])
    runtime["stop"]()  # counts survive a restart: they are in the state folder
    client = runtime["start"]()
    ask(client, runtime["chatbot"])
    time.sleep(3 * INTERVAL)
    assert used(runtime["chatbot"].account) == 0
    platform.forward()
    assert wait_used(runtime["chatbot"].account, 3) == 3
    time.sleep(3 * INTERVAL)
    assert used(runtime["chatbot"].account) == 3  # and only once


def test_the_runtimes_environment_holds_no_platform_database_credentials(runtime):
    runtime["start"]()
    raw = Path(f"/proc/{runtime['procs'][-1].pid}/environ").read_bytes().decode()  # what the process really got
    env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    assert env["WIZCHAT_PLATFORM_URL"].startswith("http://127.0.0.1:") and "@" not in env["WIZCHAT_PLATFORM_URL"]
    assert "DATABASE_URL" not in env and not [k for k in env if "DATABASE" in k and k.startswith("WIZCHAT")]
    assert PEERS.platform_pg.password not in raw


# --- the runtime's reporter in this process, against the live platform --------------------------------------------


@pytest.fixture
def reporter(deployed_chatbot, platform, tmp_path):
    return RuntimeUsage(tmp_path / "state", deployed_chatbot.id, f"http://127.0.0.1:{platform.port}",
                        platform_token(deployed_chatbot.id), interval=INTERVAL)


def test_a_batch_applied_whose_answer_was_lost_is_not_counted_again(reporter, deployed_chatbot, monkeypatch):
    for _ in range(4):
        reporter.use()
    real = RuntimeUsage._post

    def answer_lost(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise ReportFailed("the connection was cut before the answer")

    monkeypatch.setattr(RuntimeUsage, "_post", answer_lost)
    assert reporter.report() is False
    assert used(deployed_chatbot.account) == 4
    monkeypatch.setattr(RuntimeUsage, "_post", real)
    reporter.use()
    assert reporter.report() is True  # resends batch 1 unchanged (a duplicate), then batch 2
    assert used(deployed_chatbot.account) == 5
    assert reporter.state()["unreported"] == 0
    assert RuntimeUsageCursor.objects.get(chatbot=deployed_chatbot).seq == 2


def test_a_new_month_starts_the_runtimes_count_again(reporter, deployed_chatbot, monkeypatch):
    account = deployed_chatbot.account
    MessageUsage.objects.create(account=account, month=timezone.now().date().replace(day=1),
                                messages=account.plan.max_messages_per_month)
    assert reporter.report() is True
    with pytest.raises(PlanLimitReached):
        reporter.use()
    monkeypatch.setattr(runtime_usage, "month_now", lambda: "2999-01")
    reporter.use()
    assert reporter.state()["unreported"] == 1


# --- the platform's endpoint --------------------------------------------------------------------------------------


def report(chatbot, seq=1, messages=5, instance=None) -> dict:
    return {"chatbot": str(chatbot.id), "instance": instance or str(uuid.uuid4()), "seq": seq, "month": month(),
            "messages": messages}


def test_a_replayed_report_batch_is_counted_once(live_server, deployed_chatbot):
    body = report(deployed_chatbot)
    token = platform_token(deployed_chatbot.id)
    first = post_report(live_server, body, token)
    again = post_report(live_server, body, token)
    assert first == (200, {"month": month(), "used": 5, "limit": deployed_chatbot.account.plan.max_messages_per_month,
                           "plan": deployed_chatbot.account.plan.name, "byoi_allowed": True, "applied": True})
    assert again[0] == 200 and again[1]["applied"] is False and again[1]["used"] == 5
    assert used(deployed_chatbot.account) == 5


def test_a_wrong_token_gets_401_and_nothing_is_counted(live_server, deployed_chatbot, chatbot_of_another_account):
    body = report(deployed_chatbot)
    for token in (None, "", "0" * 64, platform_token(deployed_chatbot.id)[:-1] + "x",
                  platform_token(chatbot_of_another_account.id)):
        assert post_report(live_server, body, token)[0] == 401
    assert post_report(live_server, {**body, "chatbot": "not-a-uuid"}, platform_token("not-a-uuid"))[0] == 401
    assert used(deployed_chatbot.account) == 0
    assert not RuntimeUsageCursor.objects.exists()


def test_a_chatbot_that_was_never_deployed_gets_404(live_server, chatbot_of_another_account):
    body = report(chatbot_of_another_account)
    assert post_report(live_server, body, platform_token(chatbot_of_another_account.id))[0] == 404
    assert not MessageUsage.objects.filter(messages__gt=0).exists()


@pytest.mark.parametrize("change", [{"seq": 0}, {"seq": "1"}, {"messages": -1}, {"messages": 10**7},
                                    {"month": "2001-01"}, {"month": "2999-01"}, {"month": "soon"},
                                    {"instance": "x"}, {"seq": None}])
def test_a_malformed_report_gets_400_and_nothing_is_counted(live_server, deployed_chatbot, change):
    body = {**report(deployed_chatbot), **change}
    assert post_report(live_server, body, platform_token(deployed_chatbot.id))[0] == 400
    assert used(deployed_chatbot.account) == 0


def test_it_takes_only_post(live_server, deployed_chatbot):
    assert post_report(live_server, None, platform_token(deployed_chatbot.id), method="GET")[0] == 405


@pytest.fixture
def chatbot_of_another_account(make_user):
    from chatbots.services import chatbot_create

    return chatbot_create(make_user().membership.account, name="Other bot")

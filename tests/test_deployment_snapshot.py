"""A local deployment restarts what was deployed: the runtime's environment is kept, encrypted, at deploy time
(DeploymentSnapshot); a runtime that dies, or the next `make run`'s supervisor, starts from it rather than from the
chatbot's current settings, which wait for a redeploy while the page says "out of date". And a runtime enforces
the plan's monthly quota from its first question, from the quota seed it was deployed with, before it has ever
reached the platform."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from contextlib import contextmanager

import openai
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from byoi.crypto import KEY_RING, new_key
from byoi.services import component_save
from chatbots.apikeys import apikey_create
from chatbots.deployments import deployment_create, deployment_env, deployment_runtime_env, deployment_state
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import Deployment, DeploymentSnapshot
from chatbots.supervisor import Supervisor
from conversations.models import MessageUsage
from tests.test_data_residency import QUESTION, TEXT, byoi_chatbot, conversations_db  # noqa: F401
from tests.test_deployments import runtime_pids, supervisor, wait_status  # noqa: F401
from wizchat import embedded
from wizchat.runtime.usage import RuntimeUsage, month_now

pytestmark = pytest.mark.django_db(transaction=True)
OLD_MODEL, NEW_MODEL = "gpt-4o-mini", "llama-3.1-70b"  # both served by tests/openai_server.py


@contextmanager
def running_supervisor(state_dir):
    sup = Supervisor(state_dir=state_dir, poll=0.2)
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    try:
        yield sup
    finally:
        sup.stop()
        thread.join(120)


def wait_for(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def deployed(byoi_chatbot):  # noqa: F811
    document, _ = document_add(byoi_chatbot, title="Residency", text=TEXT, queue=False)
    document_ingest(document.id)
    _, key = apikey_create(byoi_chatbot, "tests")
    deployment_create(byoi_chatbot, "local")
    return {"chatbot": byoi_chatbot, "key": key}


def lose_the_key_of_the_snapshot(settings) -> None:
    """Writes the snapshot again under a key that is then lost, as after a rotation whose old key was dropped."""
    snapshot, current = DeploymentSnapshot.objects.get(), settings.BYOI_ENCRYPTION_KEY
    settings.BYOI_ENCRYPTION_KEY = new_key()
    snapshot.save()
    settings.BYOI_ENCRYPTION_KEY = current


def ask(chatbot, key):
    deployment = Deployment.objects.get(chatbot=chatbot)
    client = openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model=chatbot.slug, messages=[{"role": "user", "content": QUESTION}])


def model_asked(openai_server) -> str:
    return openai_server.calls("/chat/completions")[-1].model


def change_model(chatbot, openai_server, model: str) -> None:
    values = {k: v for k, v in openai_server.llm_settings(model=model).items() if k != "api_key"}
    component_save(chatbot, "llm", values=values, secrets={})  # a blank secret keeps the stored key


def test_a_killed_runtime_comes_back_with_the_deployed_settings_not_the_saved_ones(deployed, supervisor,  # noqa: F811
                                                                                    openai_server):
    chatbot, key = deployed["chatbot"], deployed["key"]
    wait_status(chatbot, "running")
    ask(chatbot, key)
    assert model_asked(openai_server) == OLD_MODEL
    change_model(chatbot, openai_server, NEW_MODEL)
    [pid] = runtime_pids(supervisor)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: runtime_pids(supervisor) not in ([], [pid]))
    wait_status(chatbot, "running")
    ask(chatbot, key)
    assert model_asked(openai_server) == OLD_MODEL
    state = deployment_state(chatbot)
    assert state["out_of_date"] is True and "changed" in state["why"]

    deployment = deployment_create(chatbot, "local")
    wait_status(chatbot, "running", generation=deployment.generation)
    ask(chatbot, key)
    assert model_asked(openai_server) == NEW_MODEL
    assert deployment_state(chatbot)["out_of_date"] is False


def test_the_next_make_run_starts_the_deployed_settings(deployed, openai_server, tmp_path):
    chatbot, key = deployed["chatbot"], deployed["key"]
    with running_supervisor(tmp_path / "deployments") as first:
        wait_status(chatbot, "running")
        [old_pid] = runtime_pids(first)
    change_model(chatbot, openai_server, NEW_MODEL)
    with running_supervisor(tmp_path / "deployments") as second:  # `make run` again: a new supervisor
        [pid] = wait_for(lambda: runtime_pids(second))
        assert pid != old_pid
        wait_status(chatbot, "running")
        ask(chatbot, key)
    assert model_asked(openai_server) == OLD_MODEL
    assert deployment_state(chatbot)["out_of_date"] is True


def test_the_snapshot_holds_no_plaintext_secret(deployed, openai_server, customer_db):
    deployment = Deployment.objects.get(chatbot=deployed["chatbot"])
    canaries = [customer_db["password"], openai_server.api_key, deployment_env(deployed["chatbot"])[
        "WIZCHAT_API_KEY_PEPPER"], "CUSTOM_PGVECTOR_HOST"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT environment FROM chatbots_deploymentsnapshot WHERE deployment_id = %s",
                       [deployment.pk])
        [raw] = cursor.fetchone()
    raw = bytes(raw)
    for canary in canaries:
        assert canary.encode() not in raw
    assert KEY_RING.is_current(raw)
    generation, env = deployment_runtime_env(deployment)
    assert generation == deployment.generation and env["CUSTOM_PGVECTOR_PASSWORD"] == customer_db["password"]
    snapshot = DeploymentSnapshot.objects.get(deployment=deployment)
    assert customer_db["password"] not in repr(snapshot) + str(snapshot)


def test_the_admin_does_not_show_the_snapshot(admin_client, deployed):
    from django.contrib import admin

    assert DeploymentSnapshot not in admin.site._registry
    assert all("snapshot" not in str(getattr(model_admin, "inlines", [])).lower()
               for model_admin in admin.site._registry.values())
    page = admin_client.get(f"/admin/chatbots/chatbot/{deployed['chatbot'].id}/change/").content.decode()
    assert deployment_env(deployed["chatbot"])["CUSTOM_PGVECTOR_PASSWORD"] not in page


def test_a_snapshot_no_key_opens_fails_the_deployment_and_asks_for_a_redeploy(deployed, settings, tmp_path):
    chatbot = deployed["chatbot"]
    deployment = Deployment.objects.get(chatbot=chatbot)
    lose_the_key_of_the_snapshot(settings)
    sup = Supervisor(state_dir=tmp_path / "deployments", poll=0.2)
    try:
        sup.step()
        sup.step()
        deployment.refresh_from_db()
        assert deployment.status == "failed" and "redeploy" in deployment.reason
        assert "cannot be decrypted" in deployment.reason
        assert not [e for e in sup.entries.values() if e.pending or e.current]  # nothing started on other settings
        assert deployment_state(chatbot)["out_of_date"] is False  # the settings did not change; the page loads
        deployment_create(chatbot, "local")
        sup.step()
        assert [e for e in sup.entries.values() if e.pending]
    finally:
        sup.shutdown()


def test_a_deployment_of_own_components_is_not_restarted_once_the_plan_lost_byoi(deployed, tmp_path):
    from wizchat.models import Plan

    chatbot = deployed["chatbot"]
    account = chatbot.account
    account.plan = Plan.objects.get(slug="free")
    account.save()
    sup = Supervisor(state_dir=tmp_path / "deployments", poll=0.2)
    try:
        sup.step()
        sup.step()
        deployment = Deployment.objects.get(chatbot=chatbot)
        assert deployment.status == "failed" and "BYOI is not included in the Free plan" in deployment.reason
        assert "not restarted" in deployment.reason
        assert not [e for e in sup.entries.values() if e.pending or e.current]  # neither its own nor the defaults
    finally:
        sup.shutdown()


def test_an_unreadable_snapshot_does_not_stand_in_the_way_of_a_stop_or_a_delete(deployed, settings):
    from chatbots.deployments import deployment_stop
    from chatbots.services import chatbot_delete

    chatbot = deployed["chatbot"]
    lose_the_key_of_the_snapshot(settings)
    deployment_stop(chatbot)
    assert not DeploymentSnapshot.objects.exists()
    deployment_create(chatbot, "local")
    lose_the_key_of_the_snapshot(settings)
    chatbot_delete(chatbot)
    assert not DeploymentSnapshot.objects.exists()


def test_rotating_the_key_re_encrypts_the_snapshot(deployed, settings):
    deployment = Deployment.objects.get(chatbot=deployed["chatbot"])
    old = settings.BYOI_ENCRYPTION_KEY
    settings.BYOI_ENCRYPTION_KEY, settings.BYOI_ENCRYPTION_OLD_KEYS = new_key(), [old]
    out = io.StringIO()
    call_command("rotate_byoi_key", stdout=out)
    assert f"{DeploymentSnapshot._meta.verbose_name} {deployment.pk}: re-encrypted" in out.getvalue()
    settings.BYOI_ENCRYPTION_OLD_KEYS = []  # the old key is gone
    _, env = deployment_runtime_env(deployment)
    assert env["WIZCHAT_CHATBOT_ID"] == str(deployed["chatbot"].id)


def test_a_redeploy_replaces_the_snapshot_and_a_stop_removes_it(deployed, openai_server):
    from chatbots.deployments import deployment_stop

    chatbot = deployed["chatbot"]
    change_model(chatbot, openai_server, NEW_MODEL)
    deployment = deployment_create(chatbot, "local")
    generation, env = deployment_runtime_env(deployment)
    assert generation == deployment.generation == 2 and env["CUSTOM_LLM_MODEL"] == NEW_MODEL
    deployment_stop(chatbot)
    assert not DeploymentSnapshot.objects.exists()


# --- the quota seed -------------------------------------------------------------------------------------------------


def test_a_runtime_deployed_at_the_limit_refuses_its_first_question_without_the_platform(deployed, supervisor,  # noqa: F811
                                                                                          openai_server, settings):
    chatbot, key = deployed["chatbot"], deployed["key"]
    settings.DEPLOY_PLATFORM_URL = f"http://127.0.0.1:{embedded.free_port()}"  # nothing listens there
    account = chatbot.account
    MessageUsage.objects.update_or_create(account=account, month=timezone.now().date().replace(day=1),
                                          defaults={"messages": account.plan.max_messages_per_month})
    deployment = deployment_create(chatbot, "local")  # again, with the seed of an account at its limit
    wait_status(chatbot, "running", generation=deployment.generation)
    openai_server.reset()
    with pytest.raises(openai.RateLimitError) as caught:
        ask(chatbot, key)
    assert caught.value.type == "insufficient_quota"
    assert f"allows {account.plan.max_messages_per_month} messages a month" in caught.value.body["message"]
    assert not openai_server.calls("/chat/completions")


def test_the_seed_stays_out_of_the_fingerprint(deployed):
    chatbot = deployed["chatbot"]
    MessageUsage.objects.update_or_create(account=chatbot.account, month=timezone.now().date().replace(day=1),
                                          defaults={"messages": 3})
    assert deployment_state(chatbot)["out_of_date"] is False
    _, env = deployment_runtime_env(Deployment.objects.get(chatbot=chatbot))
    assert env["WIZCHAT_QUOTA_USED"] == "0" and "WIZCHAT_QUOTA_USED" not in deployment_env(chatbot)


def test_the_runtime_keeps_the_fresher_of_the_seed_and_the_platforms_answer(tmp_path, monkeypatch):
    usage = RuntimeUsage(tmp_path, "5a0c4c2e-0000-4000-8000-000000000001", "http://127.0.0.1:9", "token")
    deployed_at = time.time() - 60
    assert usage.seed(month_now(), 4, 5, "Pro", deployed_at) is True
    usage.use()
    with pytest.raises(Exception, match="allows 5 messages"):
        usage.use()  # 4 seeded + 1 counted here
    assert usage.seed(month_now(), 4, 5, "Pro", deployed_at) is False  # a restart: the same seed, not again
    answer = {"month": month_now(), "used": 5, "limit": 50, "plan": "Business"}
    monkeypatch.setattr(RuntimeUsage, "_post", lambda self, *a, **k: answer)
    assert usage.report() is True
    assert usage.seed(month_now(), 4, 5, "Pro", deployed_at) is False  # older than what was heard
    assert usage.state() == {"month": month_now(), "used": 5, "unreported": 0, "limit": 50}
    assert usage.seed(month_now(), 9, 10, "Pro", time.time() + 1) is True  # a newer deploy's seed
    assert json.loads(json.dumps(usage.state()))["limit"] == 10

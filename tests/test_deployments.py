"""Deploying a chatbot to this machine: the supervisor `make run` runs starts a runtime fed only by the chatbot's
CUSTOM_* and WIZCHAT_* variables, behind a stable port; redeploys switch without dropping a stream; a killed
runtime comes back; a deleted chatbot's runtime stops. Plus the chatbot page's Deploy card and the commands."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time

import openai
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from psycopg import sql

from byoi.services import component_save
from chatbots import deploy_kubernetes
from chatbots.apikeys import apikey_create
from chatbots.deployments import deployment_create, deployment_env, deployment_state
from chatbots.ingestion import document_add, document_ingest
from chatbots.models import Deployment
from chatbots.supervisor import Supervisor
from tests.peers import PEERS
from tests.test_data_residency import QUESTION, TEXT, byoi_chatbot, conversations_db  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(state_dir=tmp_path / "deployments", poll=0.2)
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    yield sup
    sup.stop()
    thread.join(120)


def wait_status(chatbot, status: str, timeout: float = 90, generation: int | None = None) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = Deployment.objects.get(chatbot=chatbot)
        if deployment.status == status and (generation is None or deployment.running_generation >= generation):
            return deployment
        time.sleep(0.2)
    raise AssertionError(f"deployment is {deployment.status} ({deployment.reason}), wanted {status}")


def runtime_pids(sup: Supervisor) -> list[int]:
    return [e.current.process.pid for e in sup.entries.values() if e.current]


@pytest.fixture
def ready(byoi_chatbot, supervisor):  # noqa: F811
    document, _ = document_add(byoi_chatbot, title="Residency", text=TEXT, queue=False)
    document_ingest(document.id)
    _, key = apikey_create(byoi_chatbot, "tests")
    started = time.monotonic()
    deployment = deployment_create(byoi_chatbot, "local")
    deployment = wait_status(byoi_chatbot, "running")
    client = openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=key, max_retries=0)
    return {"chatbot": byoi_chatbot, "deployment": deployment, "client": client, "key": key,
            "seconds_to_running": time.monotonic() - started, "supervisor": supervisor}


def ask(ready, **kw):
    return ready["client"].chat.completions.create(model=ready["chatbot"].slug,
                                                   messages=[{"role": "user", "content": QUESTION}], **kw)


def test_it_serves_the_deployed_chatbot_on_its_port(ready, openai_server):
    completion = ask(ready)
    assert completion.choices[0].message.content == openai_server.reply
    assert completion.model_extra["wizchat"]["sources"]
    assert ready["deployment"].carries == {k: "custom" for k in
                                           ("llm", "embeddings", "vector_store", "graph", "conversations")}


def test_it_keeps_secrets_off_command_lines_and_out_of_files(ready):
    env = deployment_env(ready["chatbot"])
    secrets = [env[k] for k in ("CUSTOM_PGVECTOR_PASSWORD", "CUSTOM_LLM_API_KEY", "CUSTOM_FALKORDB_PASSWORD",
                                "WIZCHAT_API_KEY_PEPPER")]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "wizchat.runtime" in ps
    files = b""
    for root, _, names in os.walk(ready["supervisor"].state_dir):
        for name in names:
            if not name.endswith((".sqlite3", "-wal", "-shm")):  # the outbox holds encrypted messages only
                with open(os.path.join(root, name), "rb") as handle:
                    files += handle.read()
    for value in secrets:
        assert value not in ps
        assert value.encode() not in files


def test_it_brings_a_killed_runtime_back(ready):
    [pid] = runtime_pids(ready["supervisor"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and runtime_pids(ready["supervisor"]) in ([], [pid]):
        time.sleep(0.2)
    wait_status(ready["chatbot"], "running")
    assert runtime_pids(ready["supervisor"]) != [pid]
    assert ask(ready).choices[0].message.content


def test_it_marks_out_of_date_and_redeploys_without_dropping_a_stream(ready, openai_server, customer_db):
    chatbot = ready["chatbot"]
    assert deployment_state(chatbot)["out_of_date"] is False
    # The customer rotates the vector store's password, in their database and in WizChat.
    new_password = "rotated-" + customer_db["password"]
    with psycopg.connect(PEERS.customer_pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(customer_db["username"]),
                                                                sql.Literal(new_password)))
    component_save(chatbot, "vector_store", values={k: v for k, v in customer_db.items() if k != "password"},
                   secrets={"password": new_password})
    state = deployment_state(chatbot)
    assert state["out_of_date"] is True and "changed" in state["why"]
    assert new_password not in state["why"]
    # A client streams a slow answer while the chatbot is redeployed.
    openai_server.word_delay = 0.4
    received: list[str] = []
    errors: list[Exception] = []

    def stream():
        try:
            for chunk in ask(ready, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
        except Exception as error:  # noqa: BLE001 - recorded for the assertion
            errors.append(error)

    streamer = threading.Thread(target=stream)
    streamer.start()
    time.sleep(0.5)
    old_pids = runtime_pids(ready["supervisor"])
    deployment = deployment_create(chatbot, "local")
    wait_status(chatbot, "running", generation=deployment.generation)
    streamer.join(60)
    assert errors == []
    assert "".join(received) == openai_server.reply
    assert runtime_pids(ready["supervisor"]) != old_pids
    openai_server.word_delay = 0
    assert deployment_state(chatbot)["out_of_date"] is False
    assert ask(ready).model_extra["wizchat"]["sources"]  # the new runtime reads pgvector with the new password


def test_it_stops_the_runtime_of_a_deleted_chatbot(ready):
    from chatbots.services import chatbot_delete

    [pid] = runtime_pids(ready["supervisor"])
    chatbot_delete(ready["chatbot"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the runtime of the deleted chatbot is still running")
    assert not ready["supervisor"].entries


def test_it_refuses_to_deploy_custom_components_without_byoi_in_the_plan(byoi_chatbot):  # noqa: F811
    from chatbots.deployments import DeployRefused
    from wizchat.models import Plan

    account = byoi_chatbot.account
    account.plan = Plan.objects.get(slug="free")
    account.save()
    byoi_chatbot.refresh_from_db()
    with pytest.raises(DeployRefused, match="BYOI"):
        deployment_create(byoi_chatbot, "local")
    assert not Deployment.objects.filter(chatbot=byoi_chatbot).exists()


def test_it_shows_the_deployment_on_the_chatbot_page_without_values(byoi_chatbot, owner_client):  # noqa: F811
    response = owner_client.post(f"/dashboard/chatbots/{byoi_chatbot.id}/deploy/", {"target": "local"}, follow=True)
    page = response.content.decode()
    deployment = Deployment.objects.get(chatbot=byoi_chatbot)
    assert deployment.status == "starting" and deployment.port
    assert "Starting" in page and "Your infrastructure" in page
    from wizchat.runtime.config import is_secret

    secrets = {name: value for name, value in deployment_env(byoi_chatbot).items() if is_secret(name)}
    assert len(secrets) >= 8
    for name, value in secrets.items():
        assert value not in page, name


def test_the_env_command_masks_secrets_and_reveals_only_into_a_new_0600_file(byoi_chatbot, tmp_path):  # noqa: F811
    out = io.StringIO()
    call_command("chatbot_env", str(byoi_chatbot.id), stdout=out)
    text = out.getvalue()
    env = deployment_env(byoi_chatbot)
    assert "CUSTOM_PGVECTOR_PASSWORD=***" in text and "CUSTOM_LLM_API_KEY=***" in text
    assert f"CUSTOM_PGVECTOR_HOST={env['CUSTOM_PGVECTOR_HOST']}" in text
    assert env["CUSTOM_PGVECTOR_PASSWORD"] not in text
    with pytest.raises(CommandError, match="--output"):
        call_command("chatbot_env", str(byoi_chatbot.id), reveal=True)
    target = tmp_path / "bot.env"
    call_command("chatbot_env", str(byoi_chatbot.id), reveal=True, output=str(target), stdout=io.StringIO())
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert f"CUSTOM_PGVECTOR_PASSWORD={env['CUSTOM_PGVECTOR_PASSWORD']}" in target.read_text()
    from byoi.models import AuditEvent

    assert AuditEvent.objects.filter(action="deployment.env_revealed", chatbot_id=byoi_chatbot.id).exists()
    with pytest.raises(CommandError, match="exists"):
        call_command("chatbot_env", str(byoi_chatbot.id), reveal=True, output=str(target))


def test_the_env_command_shows_what_was_deployed_not_what_is_saved_since(byoi_chatbot):  # noqa: F811
    from byoi.services import component_save

    with pytest.raises(CommandError, match="not deployed"):
        call_command("chatbot_env", str(byoi_chatbot.id), deployed=True)
    deployed_model = deployment_env(byoi_chatbot)["CUSTOM_LLM_MODEL"]
    deployment_create(byoi_chatbot, "local")
    llm = byoi_chatbot.components.get(kind="llm")
    component_save(byoi_chatbot, "llm", values={**llm.values, "model": "a-newer-model"}, secrets={})
    out = io.StringIO()
    call_command("chatbot_env", str(byoi_chatbot.id), deployed=True, stdout=out)
    assert f"CUSTOM_LLM_MODEL={deployed_model}\n" in out.getvalue() and "CUSTOM_LLM_API_KEY=***" in out.getvalue()
    now = io.StringIO()
    call_command("chatbot_env", str(byoi_chatbot.id), stdout=now)
    assert "CUSTOM_LLM_MODEL=a-newer-model\n" in now.getvalue()


def test_the_deploy_command_prints_valid_masked_kubernetes_manifests(byoi_chatbot):  # noqa: F811
    out = io.StringIO()
    call_command("chatbot_deploy", str(byoi_chatbot.id), target="kubernetes", dry_run=True, stdout=out)
    text = out.getvalue()
    env = deployment_env(byoi_chatbot)
    assert "kind: Secret" in text and "kind: Deployment" in text and "***" in text
    assert env["CUSTOM_PGVECTOR_PASSWORD"] not in text
    assert not Deployment.objects.filter(chatbot=byoi_chatbot).exists()
    import yaml

    assert deploy_kubernetes.manifests_validate(list(yaml.safe_load_all(text))) == []


def test_it_says_no_cluster_is_configured_when_deploying_to_kubernetes(byoi_chatbot, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    deployment = deployment_create(byoi_chatbot, "kubernetes")
    assert deployment.status == "failed"
    assert "No Kubernetes cluster is configured" in deployment.reason


def test_it_marks_deployments_out_of_date_when_the_encryption_key_rotates(byoi_chatbot):  # noqa: F811
    deployment_create(byoi_chatbot, "local")
    call_command("rotate_byoi_key", stdout=io.StringIO())
    state = deployment_state(byoi_chatbot)
    assert state["out_of_date"] and "rotated" in state["why"]


def test_it_deploys_a_chatbot_on_wizchats_defaults(chatbot, supervisor, openai_server, settings):
    """A chatbot without BYOI: the runtime reaches WizChat's default stores through WIZCHAT_DEFAULT_* variables."""
    openai_server.as_default_llm(settings)
    # Not test_data_residency's marker word: a default chatbot's chunk table outlives the test's flush.
    text = "The Defaults Handbook explains how a chatbot answers from WizChat's own stores.\n\n" * 6
    document, _ = document_add(chatbot, title="Handbook", text=text, queue=False)
    document_ingest(document.id)
    _, key = apikey_create(chatbot, "tests")
    deployment_create(chatbot, "local")
    deployment = wait_status(chatbot, "running")
    assert set(deployment.carries.values()) == {"default"}
    client = openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=key, max_retries=0)
    question = "How does the Defaults Handbook say a chatbot answers?"
    completion = client.chat.completions.create(model=chatbot.slug, messages=[{"role": "user", "content": question}])
    assert completion.choices[0].message.content == openai_server.reply
    assert [s["title"] for s in completion.model_extra["wizchat"]["sources"]][0] == "Handbook"


def test_it_applies_the_chatbot_to_a_cluster_and_reads_its_state_back(byoi_chatbot, monkeypatch, tmp_path,  # noqa: F811
                                                                        owner_client):
    from tests.kube_server import KubeServer

    server = KubeServer().start()
    try:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "config")))
        server.deployment_status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0,
                                    "conditions": [{"type": "Available", "status": "False"}]}
        deployment = deployment_create(byoi_chatbot, "kubernetes")
        assert deployment.status == "starting"
        applied = {call.path.split("/")[-2] for call in server.calls("PATCH")}
        assert applied == {"secrets", "configmaps", "deployments", "services"}
        env = deployment_env(byoi_chatbot)
        secret_body = next(c.raw for c in server.calls("PATCH", "secrets"))
        config_body = next(c.raw for c in server.calls("PATCH", "configmaps"))
        assert "CUSTOM_PGVECTOR_PASSWORD" in secret_body and env["CUSTOM_PGVECTOR_PASSWORD"] not in config_body
        server.deployment_status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                                    "availableReplicas": 1,
                                    "conditions": [{"type": "Available", "status": "True"}]}
        owner_client.get(f"/dashboard/chatbots/{byoi_chatbot.id}/deploy/status/", HTTP_HX_REQUEST="true")
        assert Deployment.objects.get(chatbot=byoi_chatbot).status == "running"
        from chatbots.services import chatbot_delete

        chatbot_delete(byoi_chatbot)
        assert {call.path.split("/")[-2] for call in server.calls("DELETE")} == applied
    finally:
        server.stop()

"""A Kubernetes deployment's page names the component a new pod waits for, with the taxonomy's code, as a local
deployment's does: each runtime reports its readiness to the platform (/internal/runtimes/readiness, the
deployment's platform token), which keeps the latest summary per pod of the current generation for a minute.

Real peers: the platform as pytest-django's live server, a runtime process started with the environment the
deployment applied to the imitation Kubernetes API (tests/kube_server.py: its ConfigMap and Secret, as a pod gets
them), the customer's FalkorDB behind a proxy the test cuts."""

from __future__ import annotations

import base64
import html
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from byoi.errors import HINTS
from byoi.registry import label
from chatbots.deployments import deployment_create, deployment_refresh, platform_token
from chatbots.models import Deployment, RuntimeReadiness
from tests.kube_server import KubeServer
from tests.test_runtime import _base_env, start_runtime
from wizchat import embedded
from wizchat.runtime.config import is_secret

pytestmark = pytest.mark.django_db(transaction=True)
ROLLING = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1,
           "conditions": [{"type": "Available", "status": "False"}]}  # the new pod is not Ready
CLUSTER_SAYS = "0 of 1 replicas ready."
WAITING = f"Waiting for {label('graph')}: refused — {HINTS['refused']}"


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    server = KubeServer().start()
    monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    server.deployment_status = dict(ROLLING)
    yield server
    server.stop()


@pytest.fixture
def deployed(chatbot, behind_proxy, cluster, live_server, settings):
    """The chatbot (its FalkorDB the customer's, behind a proxy) deployed to the imitation cluster, the
    platform's URL in its environment being the live server."""
    settings.DEPLOY_PLATFORM_URL = live_server.url
    proxy = behind_proxy(chatbot, "graph")
    deployment = deployment_create(chatbot, "kubernetes")
    return {"chatbot": chatbot, "proxy": proxy, "deployment": deployment}


def pod_env(cluster: KubeServer) -> dict:
    """What a pod of the applied Deployment gets: its ConfigMap and its Secret (envFrom)."""
    config = cluster.calls("PATCH", "configmaps")[-1].body["data"]
    secret = cluster.calls("PATCH", "secrets")[-1].body["data"]
    return {**config, **{k: base64.b64decode(v).decode() for k, v in secret.items()}}


@pytest.fixture
def pod(deployed, cluster, tmp_path):
    """start() runs the runtime as the cluster's pod would (with a short report interval)."""
    procs = []

    def start():
        env = {**_base_env(tmp_path), **pod_env(cluster), "WIZCHAT_USAGE_REPORT_SECONDS": "0.5"}
        procs.append(start_runtime(env, tmp_path / "runtime.log"))
        return env

    yield start
    for proc in procs:
        embedded.stop_process(proc)


def card(client, chatbot) -> str:
    """The deployment card as the page polls it while the deployment starts, unescaped."""
    response = client.get(f"/dashboard/chatbots/{chatbot.id}/deploy/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def wait_card(client, chatbot, text: str, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if text in card(client, chatbot):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"the card never said {text!r}: {Deployment.objects.get(chatbot=chatbot).reason!r}")


def post(live_server, body, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-WizChat-Platform-Token"] = token
    request = urllib.request.Request(f"{live_server.url}/internal/runtimes/readiness", method="POST",  # noqa: S310
                                     headers=headers, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the live server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def report(chatbot, generation: int = 1, **components) -> dict:
    return {"chatbot": str(chatbot.id), "instance": str(uuid.uuid4()), "generation": generation,
            "status": "ready" if all(c.get("ok") for c in components.values()) else "not ready",
            "components": components or {"graph": {"ok": True}}}


# --- through a runtime ------------------------------------------------------------------------------------------


def test_a_pod_whose_falkordb_refuses_names_it_on_the_card_and_the_card_goes_back_once_it_answers(
        deployed, pod, owner_client):
    chatbot, proxy = deployed["chatbot"], deployed["proxy"]
    assert CLUSTER_SAYS in card(owner_client, chatbot)  # nobody reported yet: the cluster's conditions
    proxy.set("refuse")
    pod()
    assert wait_card(owner_client, chatbot, WAITING, timeout=20) < 15  # its first check, then its first report
    assert Deployment.objects.get(chatbot=chatbot).status == "starting"
    proxy.forward()
    wait_card(owner_client, chatbot, CLUSTER_SAYS)
    assert WAITING not in card(owner_client, chatbot)
    row = RuntimeReadiness.objects.get(deployment__chatbot=chatbot)
    assert row.ready and row.components["graph"] == {"ok": True, "code": None}


def test_the_stored_summary_holds_no_secret_and_no_host(deployed, pod, owner_client):
    deployed["proxy"].set("refuse")
    env = pod()
    wait_card(owner_client, deployed["chatbot"], WAITING)
    stored = json.dumps([[str(r.instance), r.generation, r.ready, r.components]
                         for r in RuntimeReadiness.objects.all()])
    canaries = [v for k, v in env.items() if is_secret(k) and len(v) >= 6]
    assert canaries  # the platform token, the FalkorDB password, the outbox key, …
    for canary in [*canaries, socket.gethostname(), "127.0.0.1", str(deployed["proxy"].port), "localhost"]:
        assert canary not in stored
    assert json.loads(stored)[0][3]["graph"] == {"ok": False, "code": "refused"}


# --- the endpoint -----------------------------------------------------------------------------------------------


def test_a_report_with_another_chatbots_token_gets_401_and_nothing_is_kept(live_server, deployed, make_user):
    from chatbots.services import chatbot_create

    other = chatbot_create(make_user().membership.account, name="Other bot")
    body = report(deployed["chatbot"], graph={"ok": False, "code": "timeout"})
    for token in (None, "", "0" * 64, platform_token(other.id), platform_token(deployed["chatbot"].id)[:-1] + "x"):
        assert post(live_server, body, token)[0] == 401
    assert not RuntimeReadiness.objects.exists()
    assert deployment_refresh(deployed["deployment"]).reason == CLUSTER_SAYS


@pytest.mark.parametrize("change", [
    {"instance": "pod-7f9c"}, {"generation": 0}, {"generation": "1"}, {"status": "fine"},
    {"components": {}}, {"components": {"mainframe": {"ok": True}}},
    {"components": {"graph": {"ok": "no"}}}, {"components": {"graph": {"ok": False, "code": "db.internal:6379"}}},
])
def test_a_malformed_report_gets_400_and_nothing_is_kept(live_server, deployed, change):
    body = {**report(deployed["chatbot"], graph={"ok": False, "code": "timeout"}), **change}
    assert post(live_server, body, platform_token(deployed["chatbot"].id))[0] == 400
    assert not RuntimeReadiness.objects.exists()


def test_a_hint_is_never_kept_the_page_shows_the_platforms_own(live_server, deployed):
    body = report(deployed["chatbot"], graph={"ok": False, "code": "refused", "hint": "db.internal.example:6379"})
    assert post(live_server, body, platform_token(deployed["chatbot"].id)) == (200, {"kept": True})
    assert "db.internal" not in json.dumps(RuntimeReadiness.objects.get().components)
    assert deployment_refresh(deployed["deployment"]).reason == WAITING


def test_a_report_of_an_older_generation_is_answered_and_not_kept(live_server, deployed):
    chatbot = deployed["chatbot"]
    deployment_create(chatbot, "kubernetes")  # generation 2: the old pods still report generation 1
    body = report(chatbot, generation=1, graph={"ok": False, "code": "timeout"})
    assert post(live_server, body, platform_token(chatbot.id)) == (200, {"kept": False})
    assert not RuntimeReadiness.objects.exists()


def test_a_report_older_than_a_minute_is_not_believed(live_server, deployed):
    body = report(deployed["chatbot"], graph={"ok": False, "code": "refused"})
    post(live_server, body, platform_token(deployed["chatbot"].id))
    assert deployment_refresh(deployed["deployment"]).reason == WAITING
    RuntimeReadiness.objects.update(reported=timezone.now() - timedelta(seconds=61))
    assert deployment_refresh(deployed["deployment"]).reason == CLUSTER_SAYS


def test_the_previous_pods_keep_serving_while_the_new_one_waits(live_server, deployed, cluster):
    cluster.deployment_status = {**ROLLING, "replicas": 2, "readyReplicas": 1}  # the old pod is Ready
    post(live_server, report(deployed["chatbot"], graph={"ok": False, "code": "refused"}),
         platform_token(deployed["chatbot"].id))
    assert deployment_refresh(deployed["deployment"]).reason == WAITING + " The previous runtime keeps serving."


def test_a_complete_rollout_shows_the_clusters_state_whatever_a_pod_said(live_server, deployed, cluster):
    post(live_server, report(deployed["chatbot"], graph={"ok": False, "code": "refused"}),
         platform_token(deployed["chatbot"].id))
    cluster.deployment_status = {**ROLLING, "readyReplicas": 1, "availableReplicas": 1}
    deployment = deployment_refresh(deployed["deployment"])
    assert (deployment.status, deployment.reason) == ("running", "1 of 1 replicas ready.")

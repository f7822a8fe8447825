"""The kubernetes deployment target: rendering, masking, schema validation, and the calls to a cluster (a real
HTTP server imitating the Kubernetes API, tests/kube_server.py)."""

import base64
import re
import uuid

import pytest

from chatbots.deploy_kubernetes import (
    NO_CLUSTER,
    KubernetesFailed,
    KubernetesUnavailable,
    kubernetes_apply,
    kubernetes_client,
    kubernetes_delete,
    kubernetes_status,
    manifest_name,
    manifests_masked,
    manifests_render,
    manifests_validate,
    manifests_yaml,
)
from tests.kube_server import APPLY, KubeServer

CHATBOT_ID = "6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f"
SECRETS = {"CUSTOM_PGVECTOR_PASSWORD": "pg-Secr3t-value-9911", "CUSTOM_LLM_API_KEY": "sk-live-7c1d2e3f4a5b6c7d",
           "WIZCHAT_API_KEY_PEPPER": "pepper-0f9e8d7c6b5a"}
CONFIG = {"WIZCHAT_CHATBOT_ID": CHATBOT_ID, "WIZCHAT_CHATBOT_NAME": "Support bot", "CUSTOM_LLM_MODEL": "gpt-4o-mini"}
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture
def kube_server():
    server = KubeServer().start()
    yield server
    server.stop()


def render(**overrides):
    params = {"chatbot_id": CHATBOT_ID, "slug": "support-bot", "secret_env": dict(SECRETS),
              "config_env": dict(CONFIG), "image": "registry.example/wizchat:1.4.2"}
    return manifests_render(**{**params, **overrides})


def by_kind(manifests, kind):
    return next(m for m in manifests if m["kind"] == kind)


def pod_spec(manifests):
    return by_kind(manifests, "Deployment")["spec"]["template"]["spec"]


def checksum(manifests):
    return by_kind(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"][
        "wizchat.io/config-checksum"]


# -- rendering and validation -----------------------------------------------------------------------------------

def test_it_renders_four_manifests_that_validate():
    manifests = render()
    assert [m["kind"] for m in manifests] == ["Secret", "ConfigMap", "Deployment", "Service"]
    assert manifests_validate(manifests) == []


def test_it_validates_against_an_older_kubernetes_version():
    assert manifests_validate(render(), "1.32") == []


def test_it_puts_secret_variables_in_the_secret_and_the_others_in_the_config_map():
    manifests = render()
    secret, config_map = by_kind(manifests, "Secret"), by_kind(manifests, "ConfigMap")
    assert secret["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == SECRETS
    assert config_map["data"] == CONFIG
    container = pod_spec(manifests)["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": secret["metadata"]["name"]}},
                                    {"secretRef": {"name": secret["metadata"]["name"]}}]
    assert {"name": "WIZCHAT_RUNTIME_STATE_DIR", "value": "/var/lib/wizchat-runtime"} in container["env"]


def test_it_reports_a_typod_field():
    manifests = render()
    spec = pod_spec(manifests)
    spec["contianers"] = spec.pop("containers")
    problems = manifests_validate(manifests)
    name = manifest_name(CHATBOT_ID)
    assert (f"Deployment/{name}: spec.template.spec: Additional properties are not allowed "
            "('contianers' was unexpected)") in problems
    assert f"Deployment/{name}: spec.template.spec: 'containers' is a required property" in problems


def test_it_reports_a_string_where_an_integer_belongs():
    manifests = render()
    by_kind(manifests, "Service")["spec"]["ports"][0]["port"] = "eighty"
    assert manifests_validate(manifests) == [
        f"Service/{manifest_name(CHATBOT_ID)}: spec.ports.0.port: 'eighty' is not of type 'integer'"]


def test_it_reports_a_missing_required_field():
    manifests = render()
    del pod_spec(manifests)["containers"][0]["name"]
    assert manifests_validate(manifests) == [
        f"Deployment/{manifest_name(CHATBOT_ID)}: spec.template.spec.containers.0: 'name' is a required property"]


def test_it_never_shows_a_secret_value_in_a_validation_error():
    manifests = render()
    by_kind(manifests, "Secret")["data"]["CUSTOM_LLM_API_KEY"] = 734912886501
    problems = manifests_validate(manifests)
    assert problems == [f"Secret/{manifest_name(CHATBOT_ID)}: data.CUSTOM_LLM_API_KEY: *** is not of type "
                        "'string', 'null'"]


def test_it_refuses_a_variable_that_is_both_secret_and_not():
    with pytest.raises(ValueError, match="CUSTOM_LLM_API_KEY"):
        render(config_env={**CONFIG, "CUSTOM_LLM_API_KEY": "sk-live-7c1d2e3f4a5b6c7d"})


def test_it_masks_every_secret_value():
    manifests = render()
    text = manifests_yaml(manifests_masked(manifests))
    for value in SECRETS.values():
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text
    assert by_kind(manifests_masked(manifests), "Secret")["data"] == dict.fromkeys(sorted(SECRETS), "***")
    assert "CUSTOM_LLM_API_KEY: '***'" in text
    assert by_kind(manifests, "Secret")["data"]["CUSTOM_LLM_API_KEY"] != "***"  # the original is untouched


def test_it_writes_one_yaml_document_per_manifest_in_rendered_order():
    import yaml

    manifests = render()
    text = manifests_yaml(manifests)
    assert text.count("---\n") == 4
    assert list(yaml.safe_load_all(text)) == manifests
    assert text.index("apiVersion") < text.index("kind:") < text.index("metadata:")


def test_it_changes_the_checksum_when_a_secret_changes():
    rotated = {**SECRETS, "CUSTOM_PGVECTOR_PASSWORD": "pg-Secr3t-value-9912"}
    assert checksum(render(secret_env=rotated)) != checksum(render())


def test_it_keeps_the_checksum_when_nothing_changes():
    reordered = dict(reversed(list(SECRETS.items())))
    assert checksum(render(secret_env=reordered, replicas=3)) == checksum(render())


def test_it_names_objects_validly_for_a_long_slug():
    manifests = render(slug="a-very-long-chatbot-slug-" * 6)
    names = {m["metadata"]["name"] for m in manifests}
    assert names == {"wizchat-bot-6f1c2d3e4b5a"}
    for name in names:
        assert len(name) <= 63 and DNS_1123_LABEL.match(name)
    for manifest in manifests:
        for value in manifest["metadata"]["labels"].values():
            assert len(value) <= 63
    assert manifest_name(uuid.uuid4()) != manifest_name(uuid.uuid4())


def test_it_labels_every_object_with_the_chatbot():
    for manifest in render():
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "wizchat-runtime"
        assert labels["app.kubernetes.io/managed-by"] == "wizchat"
        assert labels["wizchat.io/chatbot"] == CHATBOT_ID


def test_it_runs_the_runtime_non_root_on_a_read_only_root_with_both_probes():
    manifests = render()
    spec = pod_spec(manifests)
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/var/lib/wizchat-runtime"}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}


def test_it_rolls_out_without_dropping_capacity():
    deployment = by_kind(render(replicas=2), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    service = by_kind(render(port=9000), "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == 9000
    assert pod_spec(render(port=9000))["containers"][0]["ports"][0]["containerPort"] == 9000


# -- the cluster ---------------------------------------------------------------------------------------------

def test_it_says_no_cluster_is_configured(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(KubernetesUnavailable) as caught:
        kubernetes_apply(render())
    assert str(caught.value) == NO_CLUSTER == ("No Kubernetes cluster is configured: set KUBECONFIG or run WizChat "
                                               "inside a cluster.")


def test_it_says_no_cluster_is_configured_when_kubeconfig_names_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(KubernetesUnavailable, match="^No Kubernetes cluster is configured"):
        kubernetes_status(CHATBOT_ID, "wizchat")


def test_it_says_a_broken_kubeconfig_cannot_be_read_without_quoting_it(tmp_path):
    path = tmp_path / "config"
    path.write_text("clusters: [{name: a, cluster: {server: 'https://k'}}]\nusers: [{user: {token: tok-9d8c7b}}]\n")
    with pytest.raises(KubernetesUnavailable) as caught:
        kubernetes_client(path)
    assert "tok-9d8c7b" not in str(caught.value)


def test_it_applies_every_object_with_server_side_apply(kube_server, tmp_path):
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "config")
    result = kubernetes_apply(render(), kubeconfig=kubeconfig)
    name = manifest_name(CHATBOT_ID)
    assert [(r.method, r.path) for r in kube_server.requests] == [
        ("PATCH", f"/api/v1/namespaces/wizchat/secrets/{name}"),
        ("PATCH", f"/api/v1/namespaces/wizchat/configmaps/{name}"),
        ("PATCH", f"/apis/apps/v1/namespaces/wizchat/deployments/{name}"),
        ("PATCH", f"/api/v1/namespaces/wizchat/services/{name}"),
    ]
    for request in kube_server.requests:
        assert request.content_type == APPLY
        assert request.query == {"fieldManager": "wizchat", "force": "true"}
    assert [r.body for r in kube_server.requests] == render()
    assert [o["kind"] for o in result["objects"]] == ["Secret", "ConfigMap", "Deployment", "Service"]
    assert all(o["resource_version"] and o["namespace"] == "wizchat" for o in result["objects"])


def test_it_sends_the_secret_values_only_to_the_secrets_endpoint(kube_server, tmp_path):
    kubernetes_apply(render(), kubeconfig=kube_server.write_kubeconfig(tmp_path / "config"))
    for request in kube_server.requests:
        for value in SECRETS.values():
            encoded = base64.b64encode(value.encode()).decode()
            holds = value in request.raw or encoded in request.raw
            assert holds == ("/secrets/" in request.path)


def test_it_uses_the_kubeconfig_user_and_field_manager(kube_server, tmp_path):
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "config", token="tok-3a4b5c6d")
    kubernetes_apply(render(), field_manager="wizchat-ops", kubeconfig=kubeconfig)
    assert {r.headers.get("Authorization") for r in kube_server.requests} == {"Bearer tok-3a4b5c6d"}
    assert {r.query["fieldManager"] for r in kube_server.requests} == {"wizchat-ops"}


def test_it_turns_an_api_error_into_kubernetes_failed_without_the_secret(kube_server, tmp_path):
    kube_server.reject["secrets"] = (422, "Invalid", 'Secret "wizchat-bot-6f1c2d3e4b5a" is invalid: data[x]: '
                                                     'Invalid value: "pg-Secr3t-value-9911"')
    with pytest.raises(KubernetesFailed) as caught:
        kubernetes_apply(render(), kubeconfig=kube_server.write_kubeconfig(tmp_path / "config"))
    assert str(caught.value) == ('Kubernetes refused Secret/wizchat-bot-6f1c2d3e4b5a: Secret "wizchat-bot-6f1c2d3e4b5a" '
                                 'is invalid: data[x]: Invalid value: "***" (Invalid)')
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(kube_server.requests) == 1  # stops at the first refusal


def test_it_says_when_the_api_cannot_be_reached(kube_server, tmp_path):
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "config")
    kube_server.stop()
    with pytest.raises(KubernetesFailed, match="cannot be reached"):
        kubernetes_apply(render(), kubeconfig=kubeconfig)


def applied(server, tmp_path, status):
    """The chatbot applied with 2 replicas, then read back while the API reports `status`."""
    kubeconfig = server.write_kubeconfig(tmp_path / "config")
    kubernetes_apply(render(replicas=2), kubeconfig=kubeconfig)
    server.deployment_status = status
    return kubernetes_status(CHATBOT_ID, "wizchat", kubeconfig=kubeconfig)


def test_it_reports_running_when_every_replica_is_ready(kube_server, tmp_path):
    status = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
              "availableReplicas": 2,
              "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                             {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
    assert applied(kube_server, tmp_path, status) == {"state": "running", "reason": "2 of 2 replicas ready.",
                                                      "ready": 2, "desired": 2}


def test_it_reports_starting_while_replicas_are_not_ready(kube_server, tmp_path):
    status = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1,
              "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}
    result = applied(kube_server, tmp_path, status)
    assert (result["state"], result["ready"], result["desired"]) == ("starting", 1, 2)


def test_it_reports_failed_with_the_condition_message(kube_server, tmp_path):
    message = 'ReplicaSet "wizchat-bot-6f1c2d3e4b5a-7d9f" has timed out progressing.'
    status = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "unavailableReplicas": 2,
              "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                              "message": message}]}
    assert applied(kube_server, tmp_path, status) == {"state": "failed", "reason": message, "ready": 0,
                                                      "desired": 2}


def test_it_reports_starting_until_the_new_configuration_is_observed(kube_server, tmp_path):
    status = {"observedGeneration": 0, "replicas": 2, "updatedReplicas": 0,
              "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                              "message": "an old failure"}]}
    assert applied(kube_server, tmp_path, status)["state"] == "starting"


def test_it_reports_a_chatbot_that_is_not_deployed_as_absent(kube_server, tmp_path):
    result = kubernetes_status(CHATBOT_ID, "wizchat", kubeconfig=kube_server.write_kubeconfig(tmp_path / "config"))
    assert result["state"] == "absent"
    assert [(r.method, r.path) for r in kube_server.requests] == [
        ("GET", f"/apis/apps/v1/namespaces/wizchat/deployments/{manifest_name(CHATBOT_ID)}")]


def test_it_deletes_the_four_objects_and_ignores_those_already_gone(kube_server, tmp_path):
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "config")
    kubernetes_apply(render(), kubeconfig=kubeconfig)
    kubernetes_delete(CHATBOT_ID, "wizchat", kubeconfig=kubeconfig)
    assert kube_server.objects == {}
    assert {r.path.split("/")[-2] for r in kube_server.calls("DELETE")} == {"secrets", "configmaps", "deployments",
                                                                             "services"}
    kubernetes_delete(CHATBOT_ID, "wizchat", kubeconfig=kubeconfig)  # everything answers 404: fine
    assert len(kube_server.calls("DELETE")) == 8


def test_it_reports_a_refused_delete(kube_server, tmp_path):
    kube_server.reject["deployments"] = (403, "Forbidden", 'deployments.apps "wizchat-bot-6f1c2d3e4b5a" is '
                                                           'forbidden: User "wizchat" cannot delete resource')
    with pytest.raises(KubernetesFailed, match=r"forbidden: User \"wizchat\" cannot delete resource \(Forbidden\)$"):
        kubernetes_delete(CHATBOT_ID, "wizchat", kubeconfig=kube_server.write_kubeconfig(tmp_path / "config"))


def test_it_uses_a_client_it_is_given(kube_server, tmp_path):
    client = kubernetes_client(kube_server.write_kubeconfig(tmp_path / "config"))
    kubernetes_apply(render(), client=client)
    kubernetes_status(CHATBOT_ID, "wizchat", client=client)  # still open: the caller closes it
    client.close()
    assert len(kube_server.requests) == 5


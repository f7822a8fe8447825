"""The kubernetes deployment target: one chatbot's runtime as a Secret, a ConfigMap, a Deployment and a Service.

The runtime (`python -m wizchat.runtime`) is configured entirely by its environment, so the manifests are a
function of the chatbot's id, its variables (split by the caller into secret and non-secret ones) and the image.
Rendering, masking, YAML and schema validation are pure functions; `kubernetes_apply`, `kubernetes_status` and
`kubernetes_delete` talk to a cluster through lightkube with server-side apply.

Objects are named from the chatbot's id alone (`wizchat-bot-<12 hex>`), never from its slug: status and delete
find them from the id, and renaming a chatbot does not orphan its objects."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import uuid
from pathlib import Path

import httpx2
import msgspec
import yaml
from lightkube import ApiError, Client, ConfigError, KubeConfig, LoadResourceError, codecs
from lightkube.config.models import User
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.types import CascadeType

MASK = "***"
APP_NAME = "wizchat-runtime"
MANAGER = "wizchat"
LABEL_CHATBOT = "wizchat.io/chatbot"
ANNOTATION_CHECKSUM = "wizchat.io/config-checksum"
ANNOTATION_SLUG = "wizchat.io/chatbot-slug"
STATE_DIR = "/var/lib/wizchat-runtime"
TMP_DIR = "/tmp"  # noqa: S108 - inside the container, an emptyDir of its own
LISTEN_ALL = "0.0.0.0"  # noqa: S104 - the pod's own network namespace: the probes and the Service reach it there
RUN_AS = 10001  # any non-root id: the image must not need a named user
SERVICE_PORT = 80
NO_CLUSTER = "No Kubernetes cluster is configured: set KUBECONFIG or run WizChat inside a cluster."

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KubernetesUnavailable(Exception):
    """No usable cluster configuration (no kubeconfig, no in-cluster service account, or an unusable one)."""


class KubernetesFailed(Exception):
    """The cluster refused or could not be reached. The message is the API's reason, never a secret."""


# -- rendering ------------------------------------------------------------------------------------------------

def manifest_name(chatbot_id) -> str:
    """The name of every object of a chatbot: DNS-1123, 24 characters, whatever the slug."""
    return f"wizchat-bot-{uuid.UUID(str(chatbot_id)).hex[:12]}"


def _labels(chatbot_id: str) -> dict:
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": manifest_name(chatbot_id),
            "app.kubernetes.io/managed-by": MANAGER, LABEL_CHATBOT: chatbot_id}


def _selector(chatbot_id: str) -> dict:
    # A Deployment's selector is immutable: only labels that never change for this chatbot.
    return {"app.kubernetes.io/name": APP_NAME, LABEL_CHATBOT: chatbot_id}


def config_checksum(secret_env: dict[str, str], config_env: dict[str, str]) -> str:
    """sha256 over both sets of variables in canonical form: any changed value (a rotated secret) rolls the pods."""
    canonical = json.dumps({"config": config_env, "secret": secret_env}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_env(secret_env: dict[str, str], config_env: dict[str, str]) -> None:
    bad = sorted(name for name in [*secret_env, *config_env] if not _ENV_NAME.match(name))
    if bad:
        raise ValueError(f"Not an environment variable name: {', '.join(bad)}.")
    both = sorted(set(secret_env) & set(config_env))
    if both:
        raise ValueError(f"A variable is either secret or not, never both: {', '.join(both)}.")


def manifests_render(*, chatbot_id: str, slug: str, secret_env: dict[str, str], config_env: dict[str, str],
                     image: str, namespace: str = "wizchat", port: int = 8080, replicas: int = 1) -> list[dict]:
    """[Secret, ConfigMap, Deployment, Service] for one chatbot's runtime, in the order they are applied."""
    chatbot_id = str(uuid.UUID(str(chatbot_id)))
    _check_env(secret_env, config_env)
    name = manifest_name(chatbot_id)
    labels = _labels(chatbot_id)

    def metadata() -> dict:
        return {"name": name, "namespace": namespace, "labels": dict(labels),
                "annotations": {ANNOTATION_SLUG: slug}}

    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": metadata(), "type": "Opaque",
        # `data`, not `stringData`: server-side apply then owns each key, so a variable dropped here is removed.
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(secret_env.items())},
    }
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(),
                  "data": dict(sorted(config_env.items()))}
    container = {
        "name": "runtime",
        "image": image,
        "command": ["python", "-m", "wizchat.runtime"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": name}}, {"secretRef": {"name": name}}],
        # `env` wins over `envFrom`: where the runtime listens and keeps its state is the manifest's business.
        "env": [
            {"name": "WIZCHAT_RUNTIME_HOST", "value": LISTEN_ALL},
            {"name": "WIZCHAT_RUNTIME_PORT", "value": str(port)},
            {"name": "WIZCHAT_RUNTIME_STATE_DIR", "value": STATE_DIR},
            {"name": "HOME", "value": TMP_DIR},  # the root filesystem is read-only
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                           "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 10,
                          "periodSeconds": 20, "timeoutSeconds": 3, "failureThreshold": 3},
        # The endpoint is removed while the pod still serves: requests routed just before are not dropped.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_DIR}, {"name": "state", "mountPath": STATE_DIR}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 300,
            "selector": {"matchLabels": _selector(chatbot_id)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": dict(labels),
                             "annotations": {ANNOTATION_CHECKSUM: config_checksum(secret_env, config_env)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,  # the environment is the runtime's configuration: nothing else in it
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                        "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "state", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": metadata(),
        "spec": {"type": "ClusterIP", "selector": _selector(chatbot_id),
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": port, "protocol": "TCP"}]},
    }
    return [secret, config_map, deployment, service]


def manifests_masked(manifests: list[dict]) -> list[dict]:
    """A deep copy for display: every value of every Secret is `***` (keys stay visible)."""
    masked = copy.deepcopy(manifests)
    for manifest in masked:
        if manifest.get("kind") == "Secret":
            for field in ("data", "stringData"):
                if isinstance(manifest.get(field), dict):
                    manifest[field] = dict.fromkeys(manifest[field], MASK)
    return masked


def manifests_yaml(manifests: list[dict]) -> str:
    """Multi-document YAML in the rendered key order."""
    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False, explicit_start=True,
                              allow_unicode=True)


def _secret_values(manifests: list[dict]) -> list[str]:
    """Every secret value in the manifests, as written and base64-decoded, longest first (for scrubbing)."""
    values = set()
    for manifest in manifests:
        if not isinstance(manifest, dict) or manifest.get("kind") != "Secret":
            continue
        for field in ("data", "stringData"):
            entries = manifest.get(field)
            for value in entries.values() if isinstance(entries, dict) else ():
                values.add(str(value))
                if field == "data" and isinstance(value, str):
                    try:
                        values.add(base64.b64decode(value, validate=True).decode())
                    except ValueError:
                        pass
    # Very short values would mangle every message they happen to occur in.
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def _scrub(message: str, secrets: list[str]) -> str:
    for value in secrets:
        message = message.replace(value, MASK)
    return message


def _kind_name(manifest) -> str:
    if not isinstance(manifest, dict):
        return "?"
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{manifest.get('kind', '?')}/{name or '?'}"


def _all_schema_errors(manifest: dict, first) -> list:
    """Every error of an invalid manifest, not only the one kubernetes_validate raises (its best match: for a
    typo'd `contianers` that is "'containers' is a required property", without the typo). The same schema files
    at the version validate() chose; if they cannot be read here, the one error."""
    from jsonschema.validators import Draft202012Validator
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    try:
        full = next(v for v in reversed(utils.all_versions()) if utils.major_minor(v) == first.version)
        api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", manifest["apiVersion"])
        folder = f"kubernetes-json-schema/v{full}-local-strict"
        schema = utils.schema_contents(f"{folder}/{manifest['kind'].lower()}-{api}.json", full)
        definitions = utils.schema_contents(f"{folder}/_definitions.json", full)
        registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
        errors = list(Draft202012Validator(schema, registry=registry).iter_errors(manifest))
    except Exception:  # noqa: BLE001 - a package layout we do not know: the error validate() gave is still right
        return [first]
    return sorted(errors, key=lambda e: [str(part) for part in e.path]) or [first]


def manifests_validate(manifests: list[dict], kubernetes_version: str | None = None) -> list[str]:
    """One line per problem ("Kind/name: path: message") against the Kubernetes OpenAPI schema, strict (unknown
    fields are errors); empty when every manifest is valid. Defaults to the newest version the package ships.
    Secret values never appear in a line, even when one is the problem."""
    import kubernetes_validate  # a development dependency: only callers that validate need it

    version = kubernetes_version or kubernetes_validate.latest_version()
    secrets = _secret_values(manifests)
    problems = []
    for manifest in manifests:
        where = _kind_name(manifest)
        if not isinstance(manifest, dict) or "apiVersion" not in manifest or "kind" not in manifest:
            problems.append(f"{where}: (root): apiVersion and kind are required")
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as first:
            for err in _all_schema_errors(manifest, first):
                path = ".".join(str(part) for part in err.path) or "(root)"
                problems.append(_scrub(f"{where}: {path}: {err.message}", secrets))
        except kubernetes_validate.SchemaNotFoundError as err:
            problems.append(f"{where}: (root): {err.message}")
        except kubernetes_validate.utils.VersionNotSupportedError as err:
            raise ValueError(err.message) from err
    return problems


# -- the cluster ----------------------------------------------------------------------------------------------

def kubernetes_client(kubeconfig: str | Path | None = None):
    """A lightkube Client: the given kubeconfig file, else in-cluster config, else KUBECONFIG / ~/.kube/config.
    Raises KubernetesUnavailable when there is none or it cannot be used."""

    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        single = config.get()
    except ConfigError as err:
        if str(err).endswith("not found") and str(err).startswith("Configuration file"):
            raise KubernetesUnavailable(NO_CLUSTER) from None
        raise KubernetesUnavailable(f"The Kubernetes configuration cannot be used: {err}") from None
    except (KeyError, TypeError, yaml.YAMLError, msgspec.ValidationError):
        # Not the error's text: a kubeconfig holds tokens and keys.
        raise KubernetesUnavailable("The Kubernetes configuration cannot be read: check its clusters, contexts "
                                    "and users.") from None
    if single.user is None:
        # A context without a user (e.g. `kubectl proxy`) is valid, but lightkube 1.0 asserts one exists.
        single = single._replace(user=User())
    try:
        return Client(config=single, field_manager=MANAGER)
    except ConfigError as err:
        raise KubernetesUnavailable(f"The Kubernetes configuration cannot be used: {err}") from None


def _failed(err: Exception, what: str, secrets: list[str] = ()) -> KubernetesFailed:
    """An API or transport error as one sentence, without a traceback or a secret."""

    if isinstance(err, ApiError):
        status = err.status
        message = getattr(status, "message", None) or f"HTTP {err.response.status_code}"
        reason = getattr(status, "reason", None)
        text = f"Kubernetes refused {what}: {message}" + (f" ({reason})" if reason else "")
    elif isinstance(err, httpx2.HTTPStatusError):
        text = f"Kubernetes refused {what}: HTTP {err.response.status_code}"
    elif isinstance(err, httpx2.TimeoutException):
        text = f"The Kubernetes API did not answer in time ({what})."
    elif isinstance(err, httpx2.ConnectError):
        text = f"The Kubernetes API cannot be reached ({what}): connection failed."
    else:
        text = f"The Kubernetes API failed ({what}): {type(err).__name__}."
    return KubernetesFailed(_scrub(text, list(secrets)))


class _Session:
    """The caller's client, or one built from configuration and closed afterwards."""

    def __init__(self, client=None, kubeconfig=None):
        self.client = client
        self.kubeconfig = kubeconfig
        self.owned = client is None

    def __enter__(self):
        if self.client is None:
            self.client = kubernetes_client(self.kubeconfig)
        return self.client

    def __exit__(self, *exc):
        if self.owned and self.client is not None:
            self.client.close()


def kubernetes_apply(manifests: list[dict], *, field_manager: str = MANAGER, client=None,
                     kubeconfig: str | Path | None = None) -> dict:
    """Server-side apply of each manifest in order (force: WizChat owns these objects' fields).
    Returns {"objects": [{"kind", "name", "namespace", "resource_version"}, ...]}."""

    secrets = _secret_values(manifests)
    try:
        objects = [codecs.from_dict(manifest) for manifest in manifests]
    except (LoadResourceError, TypeError, ValueError) as err:
        raise KubernetesFailed(_scrub(f"A manifest cannot be sent: {err}", secrets)) from None
    applied = []
    with _Session(client, kubeconfig) as kube:
        for manifest, obj in zip(manifests, objects, strict=True):
            what = _kind_name(manifest)
            try:
                result = kube.apply(obj, field_manager=field_manager, force=True)
            except (ApiError, httpx2.HTTPError) as err:
                raise _failed(err, what, secrets) from None
            except ConfigError as err:  # credentials read at request time (token file, exec plugin)
                raise KubernetesUnavailable(f"The Kubernetes configuration cannot be used: {err}") from None
            applied.append({"kind": manifest["kind"], "name": result.metadata.name,
                            "namespace": result.metadata.namespace,
                            "resource_version": result.metadata.resourceVersion})
    return {"objects": applied}


def _deployment_state(deployment) -> dict:
    spec, status = deployment.spec, deployment.status
    desired = spec.replicas if spec and spec.replicas is not None else 1
    ready = (status.readyReplicas or 0) if status else 0
    updated = (status.updatedReplicas or 0) if status else 0
    total = (status.replicas or 0) if status else 0
    conditions = {c.type: c for c in ((status.conditions or []) if status else [])}

    def state(name: str, reason: str) -> dict:
        return {"state": name, "reason": reason, "ready": ready, "desired": desired}

    generation = deployment.metadata.generation
    if status is None or (generation is not None and (status.observedGeneration or 0) < generation):
        # Conditions until then describe the previous configuration: a fixed failure is not reported again.
        return state("starting", "Kubernetes has not picked up the latest configuration yet.")
    progressing = conditions.get("Progressing")
    if progressing is not None and progressing.status == "False":
        # ProgressDeadlineExceeded: pods that crash or cannot pull their image, after progressDeadlineSeconds.
        return state("failed", progressing.message or progressing.reason or "The rollout stopped progressing.")
    replica_failure = conditions.get("ReplicaFailure")
    if replica_failure is not None and replica_failure.status == "True":
        return state("failed", replica_failure.message or replica_failure.reason or "Pods cannot be created.")
    if ready >= desired and updated >= desired and total <= desired:
        return state("running", f"{ready} of {desired} replicas ready.")
    if updated < desired or total > desired:
        return state("starting", f"Rolling out: {updated} of {desired} replicas updated, {ready} ready.")
    return state("starting", f"{ready} of {desired} replicas ready.")


def kubernetes_status(chatbot_id, namespace: str = "wizchat", *, client=None,
                      kubeconfig: str | Path | None = None) -> dict:
    """The chatbot's Deployment read back: {"state": "running"|"starting"|"failed"|"absent", "reason", "ready",
    "desired"}."""

    name = manifest_name(chatbot_id)
    with _Session(client, kubeconfig) as kube:
        try:
            deployment = kube.get(Deployment, name, namespace=namespace)
        except ApiError as err:
            if err.response.status_code == 404:
                return {"state": "absent", "reason": f"No deployment {name} in namespace {namespace}.",
                        "ready": 0, "desired": 0}
            raise _failed(err, f"Deployment/{name}") from None
        except httpx2.HTTPError as err:
            raise _failed(err, f"Deployment/{name}") from None
    return _deployment_state(deployment)


def kubernetes_delete(chatbot_id, namespace: str = "wizchat", *, client=None,
                      kubeconfig: str | Path | None = None) -> None:
    """Removes the chatbot's Service, Deployment, ConfigMap and Secret; those already gone are fine."""

    name = manifest_name(chatbot_id)
    with _Session(client, kubeconfig) as kube:
        for resource in (Service, Deployment, ConfigMap, Secret):
            what = f"{resource.__name__}/{name}"
            try:
                kube.delete(resource, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
            except ApiError as err:
                if err.response.status_code != 404:
                    raise _failed(err, what) from None
            except httpx2.HTTPError as err:
                raise _failed(err, what) from None

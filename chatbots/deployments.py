"""Deploying a chatbot: its BYOI settings injected as the spec's CUSTOM_* variables (and the WIZCHAT_* ones the
runtime needs) into a standalone runtime — a supervised process on this machine, or Kubernetes.

The environment is built here, from the chatbot's saved components, at deploy time only; it goes to the runtime's
process environment (local) or to a Kubernetes Secret, never to a command line, a page or a log. A local
deployment keeps it, encrypted, as its snapshot (DeploymentSnapshot): a runtime restarted after a crash or by the
next `make run` runs what was deployed, not settings saved since (Kubernetes keeps it in the Secret and ConfigMap
it applied). A deployment remembers a keyed digest of it (`fingerprint`): when the chatbot's settings, secrets,
keys or allowed websites change, the digest no longer matches and the deployment shows "out of date" until it is
redeployed. The quota seed (the account's messages this month and the plan's limit, so that a runtime enforces
the quota before it first reaches the platform) goes to the runtime too, but not into the digest: it changes
with every message and is not a setting."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import pickle
import socket
from urllib.parse import quote

from django.conf import settings
from django.core.signing import BadSignature
from django.db import transaction
from django.utils import timezone
from django_cryptography.utils.crypto import InvalidToken

from byoi.audit import audit_record
from byoi.errors import HINTS, BackendError
from byoi.registry import KINDS, label
from byoi.services import components_to_env
from conversations.services import messages_this_month
from wizchat.plans import PlanLimitReached, plan_require_byoi
from wizchat.runtime.config import is_secret

from . import apikeys, deploy_kubernetes
from .models import Chatbot, Deployment, DeploymentSnapshot, RuntimeReadiness

log = logging.getLogger("wizchat.deployments")
PREVIOUS_SERVES = " The previous runtime keeps serving."
READINESS_MAX_AGE = datetime.timedelta(seconds=60)  # a runtime's readiness report older than this is not believed


class DeployRefused(Exception):
    """The chatbot cannot be deployed as it is; the message says what to change."""


def _derived(purpose: str, chatbot_id) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), f"{purpose}:{chatbot_id}".encode(), hashlib.sha256).digest()


def platform_token(chatbot_id) -> str:
    """Shared by the platform and the chatbot's runtime: the platform presents it to the runtime's /readyz to see
    where its components run; the runtime presents it with its usage reports (chatbots.runtime_usage). Derived,
    never stored: whoever holds SECRET_KEY can recompute it, nobody else can."""
    return _derived("runtime-platform-token", chatbot_id).hex()


def _store_url() -> str:
    db = settings.DEFAULT_STORE_DATABASE
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    sslmode = (db.get("OPTIONS") or {}).get("sslmode")
    query = f"?sslmode={sslmode}" if sslmode else ""
    return f"postgres://{auth}{host}:{db.get('PORT') or 5432}/{quote(db.get('NAME') or '', safe='')}{query}"


def deployment_env(chatbot: Chatbot) -> dict[str, str]:
    """Every variable the chatbot's runtime needs, secrets included (for the runtime only).

    Raises DeployRefused when the chatbot is set to use its own components but its plan no longer allows BYOI:
    a deployment never runs silently on WizChat's defaults."""
    try:
        env = components_to_env(chatbot)
    except BackendError as error:
        raise DeployRefused(f"{error.message} {error.hint or ''}".strip()) from None
    custom = {kind for kind in KINDS if any(f.env in env for f in KINDS[kind].fields)}
    env.update({
        "WIZCHAT_CHATBOT_ID": str(chatbot.id),
        "WIZCHAT_CHATBOT_NAME": chatbot.name,
        "WIZCHAT_CHATBOT_SLUG": chatbot.slug,
        "WIZCHAT_API_KEY_PEPPER": apikeys.chatbot_pepper(chatbot.id),
        "WIZCHAT_PLATFORM_TOKEN": platform_token(chatbot.id),
        "WIZCHAT_OUTBOX_KEY": base64.urlsafe_b64encode(_derived("runtime-outbox", chatbot.id)).decode(),
        "WIZCHAT_CONNECT_TIMEOUT": f"{settings.BYOI_CONNECT_TIMEOUT:g}",
        "WIZCHAT_OPERATION_TIMEOUT": f"{settings.BYOI_OPERATION_TIMEOUT:g}",
        "WIZCHAT_BREAKER_COOLDOWN": f"{settings.BYOI_BREAKER_COOLDOWN:g}",
        "WIZCHAT_BREAKER_MAX_COOLDOWN": f"{settings.BYOI_BREAKER_MAX_COOLDOWN:g}",
        "WIZCHAT_RATE_LIMIT": str(settings.API_RATE_LIMIT_PER_MINUTE),  # the platform's limits, per key and address
        "WIZCHAT_TRUSTED_PROXIES": str(settings.TRUSTED_PROXY_COUNT),
    })
    optional = {
        "WIZCHAT_CHATBOT_INSTRUCTIONS": chatbot.instructions.strip(),
        "WIZCHAT_API_KEYS": apikeys.runtime_keys(chatbot),
        "WIZCHAT_ALLOWED_ORIGINS": ",".join(chatbot.allowed_origins),
        "WIZCHAT_EGRESS_ALLOWED_NETWORKS": ",".join(str(n) for n in settings.EGRESS_ALLOWED_NETWORKS),
        "WIZCHAT_CA_BUNDLE": settings.BYOI_CA_BUNDLE,
        # Where it reports the messages it answers, for the plan's monthly quota (chatbots.runtime_usage).
        "WIZCHAT_PLATFORM_URL": settings.DEPLOY_PLATFORM_URL.rstrip("/"),
    }
    if "llm" not in custom:
        optional.update(WIZCHAT_DEFAULT_LLM_ENDPOINT=settings.DEFAULT_LLM_ENDPOINT,
                        WIZCHAT_DEFAULT_LLM_MODEL=settings.DEFAULT_LLM_MODEL,
                        WIZCHAT_DEFAULT_LLM_API_KEY=settings.DEFAULT_LLM_API_KEY)
    if "embeddings" not in custom:
        optional.update(WIZCHAT_DEFAULT_EMBEDDINGS_ENDPOINT=settings.DEFAULT_EMBEDDINGS_ENDPOINT,
                        WIZCHAT_DEFAULT_EMBEDDINGS_MODEL=settings.DEFAULT_EMBEDDINGS_MODEL,
                        WIZCHAT_DEFAULT_EMBEDDINGS_DIMENSIONS=str(settings.DEFAULT_EMBEDDINGS_DIMENSIONS),
                        WIZCHAT_DEFAULT_EMBEDDINGS_API_KEY=settings.DEFAULT_EMBEDDINGS_API_KEY or "")
    if {"vector_store", "conversations"} - custom:
        optional["WIZCHAT_DEFAULT_STORE_URL"] = _store_url()
    if "graph" not in custom:
        optional["WIZCHAT_DEFAULT_FALKORDB_URL"] = settings.FALKORDB_URL
    env.update({k: v for k, v in optional.items() if v})
    return env


def quota_seed(chatbot: Chatbot) -> dict[str, str]:
    """The account's monthly message count and the plan's limit as they stand now (WIZCHAT_QUOTA_*): a runtime
    enforces them from its first question, before it has reached the platform, and its usage reports refine them.
    Not part of the fingerprint (it is not a setting: it changes with every message)."""
    account = chatbot.account
    now = timezone.now()
    return {"WIZCHAT_QUOTA_MONTH": now.strftime("%Y-%m"), "WIZCHAT_QUOTA_USED": str(messages_this_month(account)),
            "WIZCHAT_QUOTA_LIMIT": str(account.plan.max_messages_per_month),
            "WIZCHAT_QUOTA_PLAN": account.plan.name,
            "WIZCHAT_QUOTA_AT": now.astimezone(datetime.UTC).isoformat()}


def env_split(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(secret variables, plain variables): a Kubernetes Secret and ConfigMap."""
    secret = {k: v for k, v in env.items() if is_secret(k)}
    return secret, {k: v for k, v in env.items() if k not in secret}


def env_masked(env: dict[str, str]) -> dict[str, str]:
    """The variables as the spec shows them: secrets as ***."""
    return {k: ("***" if is_secret(k) else v) for k, v in env.items()}


def env_fingerprint(env: dict[str, str]) -> str:
    """A keyed digest of the variables: equal environments digest equally; nothing can be learnt from it."""
    canonical = "\n".join(f"{k}={env[k]}" for k in sorted(env))
    return hmac.new(_derived("deployment-fingerprint", "all"), canonical.encode(), hashlib.sha256).hexdigest()


def carries(env: dict[str, str]) -> dict[str, str]:
    """{kind: "custom"|"default"}: what the deployment runs with, as labels."""
    return {kind: ("custom" if any(f.env in env for f in KINDS[kind].fields) else "default") for kind in KINDS}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((settings.DEPLOY_LOCAL_HOST, 0))
        return sock.getsockname()[1]


def deployment_create(chatbot: Chatbot, target: str = Deployment.Target.LOCAL, *, actor=None) -> Deployment:
    """Deploy (or redeploy) the chatbot. Local: the supervisor of `make run` starts the runtime and switches to
    it once it is ready. Kubernetes: the manifests are applied now (server-side apply)."""
    if target not in Deployment.Target.values:
        raise DeployRefused(f"Unknown target “{target[:30]}”: choose local or kubernetes.")
    env = deployment_env(chatbot)
    runtime_env = {**env, **quota_seed(chatbot)}
    with transaction.atomic():
        deployment, created = Deployment.objects.select_for_update().get_or_create(
            chatbot=chatbot, defaults={"target": target})
        if not created:
            if deployment.target != target and deployment.status != Deployment.Status.STOPPED:
                raise DeployRefused(f"The chatbot runs on {deployment.get_target_display()}: stop that deployment "
                                    "before deploying it elsewhere.")
            deployment.target = target
            deployment.generation += 1
        deployment.fingerprint = env_fingerprint(env)
        deployment.carries = carries(env)
        deployment.stale_reason = ""
        deployment.reason = ""
        deployment.status = Deployment.Status.STARTING
        deployment.deployed = timezone.now()
        if target == Deployment.Target.LOCAL:
            deployment.port = deployment.port or _free_port()
            deployment.url = f"http://{settings.DEPLOY_LOCAL_HOST}:{deployment.port}"
        deployment.save()
        runtime_env["WIZCHAT_DEPLOY_GENERATION"] = str(deployment.generation)  # it reports its readiness with it
        if target == Deployment.Target.LOCAL:
            # What every runtime of this generation starts with; the next deploy replaces it.
            _snapshot_save(deployment, runtime_env)
        else:
            _snapshot_delete(deployment)
    audit_record("deployment.deploy", chatbot=chatbot, actor=actor, target=target,
                 generation=deployment.generation, components=deployment.carries)
    if target == Deployment.Target.KUBERNETES:
        _kubernetes_apply(deployment, runtime_env)
    return deployment


def _snapshot_save(deployment: Deployment, env: dict[str, str]) -> None:
    """Replace the deployment's snapshot without reading the old one (no key may open it any more)."""
    values = {"generation": deployment.generation, "environment": json.dumps(env)}
    if not DeploymentSnapshot.objects.filter(deployment=deployment).update(updated=timezone.now(), **values):
        DeploymentSnapshot.objects.create(deployment=deployment, **values)


def _snapshot_delete(deployment: Deployment) -> None:
    DeploymentSnapshot.objects.filter(deployment=deployment).defer("environment").delete()


def deployment_runtime_env(deployment: Deployment) -> tuple[int, dict[str, str]]:
    """(generation, environment): what the deployment's latest deploy was made with (secrets included; for the
    runtime only), from its snapshot — the generation is the snapshot's, which may be newer than `deployment` if
    a deploy landed since it was read. Raises DeployRefused — never falls back to the chatbot's current
    settings — when the snapshot cannot be decrypted (its key is gone) or is older than the deployment.

    A deployment made before snapshots existed has none: its current environment is used only when its
    fingerprint proves it is the one deployed, and is saved as the snapshot then."""
    snapshot = DeploymentSnapshot.objects.filter(deployment=deployment).defer("environment").first()
    if snapshot is None:
        env = deployment_env(deployment.chatbot)
        if env_fingerprint(env) != deployment.fingerprint:
            raise DeployRefused("The chatbot's settings changed since this deployment was made and the environment "
                                "it was deployed with was not kept: redeploy the chatbot.")
        env.update(quota_seed(deployment.chatbot), WIZCHAT_DEPLOY_GENERATION=str(deployment.generation))
        _snapshot_save(deployment, env)
        return deployment.generation, env
    if snapshot.generation < deployment.generation:
        raise DeployRefused("The environment kept for this deployment belongs to an earlier deploy: redeploy the "
                            "chatbot.")
    try:
        env = json.loads(snapshot.environment)  # decrypted here, on first access
    except (InvalidToken, BadSignature, pickle.UnpicklingError, ValueError, TypeError):
        log.error("The saved environment of chatbot %s's deployment cannot be decrypted", deployment.chatbot_id)
        raise DeployRefused("The environment this deployment was made with cannot be decrypted (its encryption "
                            "key is gone): redeploy the chatbot.") from None
    if not isinstance(env, dict):
        raise DeployRefused("The environment kept for this deployment is unreadable: redeploy the chatbot.")
    if any(name.startswith("CUSTOM_") for name in env):
        try:  # the plan lost BYOI since the deploy: its own components are not started again (nor the defaults)
            plan_require_byoi(deployment.chatbot.account)
        except PlanLimitReached as refused:
            raise DeployRefused(f"{refused} This deployment uses your own components, so it is not restarted.") from None
    return snapshot.generation, env


def kubernetes_manifests(chatbot: Chatbot, env: dict[str, str]) -> list[dict]:
    secret, plain = env_split(env)
    return deploy_kubernetes.manifests_render(
        chatbot_id=str(chatbot.id), slug=chatbot.slug, secret_env=secret, config_env=plain,
        image=settings.DEPLOY_KUBERNETES_IMAGE, namespace=settings.DEPLOY_KUBERNETES_NAMESPACE)


def components_failing(body: dict) -> str:
    """Each failing component of a readiness body (/readyz, or a runtime's report) with its code and hint:
    "FalkorDB: timeout — hint; …". The local supervisor and a Kubernetes deployment's page say it the same way."""
    return "; ".join(f"{label(kind)}: {entry.get('code')}" + (f" — {entry['hint']}" if entry.get("hint") else "")
                     for kind, entry in body.get("components", {}).items() if not entry.get("ok"))


def reported_waiting(deployment: Deployment) -> str:
    """"Waiting for FalkorDB: timeout — hint" when a runtime of the deployment's current generation reported in
    the last minute that it is not ready (the latest such report); "" when none did. The hint is the platform's
    own for the code: a report carries no text to show."""
    report = (RuntimeReadiness.objects.filter(deployment=deployment, generation=deployment.generation, ready=False,
                                              reported__gte=timezone.now() - READINESS_MAX_AGE)
              .order_by("-reported").first())
    if report is None:
        return ""
    failing = components_failing({"components": {
        kind: {**entry, "hint": HINTS.get(entry.get("code"))} for kind, entry in report.components.items()}})
    return f"Waiting for {failing}" if failing else ""


def deployment_refresh(deployment: Deployment) -> Deployment:
    """Read a Kubernetes deployment's state back from the cluster (a local one is kept current by the
    supervisor). While the rollout is not complete, a new pod's own report of a failing component (its code and
    hint, chatbots.runtime_readiness) says more than the cluster's conditions, and is shown instead; the
    conditions stay when no pod has reported one."""
    if deployment.target != Deployment.Target.KUBERNETES or deployment.status == Deployment.Status.STOPPED:
        return deployment
    try:
        state = deploy_kubernetes.kubernetes_status(str(deployment.chatbot_id), settings.DEPLOY_KUBERNETES_NAMESPACE)
    except (deploy_kubernetes.KubernetesUnavailable, deploy_kubernetes.KubernetesFailed) as error:
        deployment_mark(deployment, Deployment.Status.FAILED, str(error))
        return deployment
    status = {"running": Deployment.Status.RUNNING, "failed": Deployment.Status.FAILED,
              "absent": Deployment.Status.FAILED}.get(state.get("state"), Deployment.Status.STARTING)
    reason = state.get("reason") or ("Its objects are gone from the cluster." if state.get("state") == "absent"
                                     else "")
    if state.get("state") in ("starting", "failed"):
        waiting = reported_waiting(deployment)
        if waiting and state["state"] == "failed":
            reason = f"{reason} {waiting}"
        elif waiting:
            # The rollout keeps the old pods until a new one is Ready.
            reason = waiting + (PREVIOUS_SERVES if state.get("ready") else "")
    deployment_mark(deployment, status, reason)
    return deployment


def _kubernetes_apply(deployment: Deployment, env: dict[str, str]) -> None:
    chatbot = deployment.chatbot
    try:
        deploy_kubernetes.kubernetes_apply(kubernetes_manifests(chatbot, env))
        state = deploy_kubernetes.kubernetes_status(str(chatbot.id), settings.DEPLOY_KUBERNETES_NAMESPACE)
    except (deploy_kubernetes.KubernetesUnavailable, deploy_kubernetes.KubernetesFailed) as error:
        deployment_mark(deployment, Deployment.Status.FAILED, str(error))
        return
    status = {"running": Deployment.Status.RUNNING, "failed": Deployment.Status.FAILED}.get(
        state.get("state"), Deployment.Status.STARTING)
    url = f"http://{deploy_kubernetes.manifest_name(str(chatbot.id))}.{settings.DEPLOY_KUBERNETES_NAMESPACE}.svc"
    deployment_mark(deployment, status, state.get("reason") or "", url=url)


def deployment_mark(deployment: Deployment, status: str, reason: str = "", **fields) -> None:
    """Record what happened, touching only these columns (a deploy may bump the generation meanwhile)."""
    values = {"status": status, "reason": reason[:2000], **fields}
    Deployment.objects.filter(pk=deployment.pk).update(updated=timezone.now(), **values)
    for name, value in values.items():
        setattr(deployment, name, value)


def deployment_stop(chatbot: Chatbot, *, actor=None) -> Deployment | None:
    deployment = Deployment.objects.filter(chatbot=chatbot).first()
    if deployment is None:
        return None
    if deployment.target == Deployment.Target.KUBERNETES:
        try:
            deploy_kubernetes.kubernetes_delete(str(chatbot.id), settings.DEPLOY_KUBERNETES_NAMESPACE)
        except (deploy_kubernetes.KubernetesUnavailable, deploy_kubernetes.KubernetesFailed):
            pass  # nothing was ever applied, or the cluster is gone: the record still says stopped
    deployment_mark(deployment, Deployment.Status.STOPPED, "Stopped by its owner.")
    _snapshot_delete(deployment)  # nothing restarts it: keep no secrets
    audit_record("deployment.stop", chatbot=chatbot, actor=actor, target=deployment.target)
    return deployment


def deployments_mark_stale(reason: str, queryset=None) -> int:
    """Out of date for a reason the fingerprint cannot see (the encryption key was rotated)."""
    queryset = queryset if queryset is not None else Deployment.objects.all()
    return queryset.exclude(status=Deployment.Status.STOPPED).update(stale_reason=reason[:200])


def deployment_state(chatbot: Chatbot) -> dict | None:
    """For the chatbot page: the deployment with `out_of_date` and why, or None when never deployed."""
    deployment = Deployment.objects.filter(chatbot=chatbot).first()
    if deployment is None:
        return None
    why = deployment.stale_reason
    if not why and deployment.status != Deployment.Status.STOPPED:
        try:
            current = env_fingerprint(deployment_env(chatbot))
        except DeployRefused as refused:
            current, why = "", str(refused)
        if not why and current != deployment.fingerprint:
            why = "The chatbot's settings, secrets, API keys or allowed websites changed since it was deployed."
    return {"deployment": deployment, "out_of_date": bool(why) and deployment.status != Deployment.Status.STOPPED,
            "why": why, "components": [(KINDS[kind].label, deployment.carries[kind]) for kind in KINDS
                                       if kind in deployment.carries]}

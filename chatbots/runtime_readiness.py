"""Deployed runtimes report their readiness, so that a Kubernetes deployment's page names the component a new pod
waits for ("Waiting for FalkorDB: timeout — …"), as the local supervisor does from /readyz.

A runtime POSTs a summary to `/internal/runtimes/readiness` soon after it starts and every few seconds after
(wizchat.runtime.readiness_report), authenticated as its usage reports are (chatbots.runtime_usage: the
deployment's platform token, compared in constant time before any query). The platform keeps the latest summary
per runtime instance (RuntimeReadiness), of the deployment's current generation only, for a minute; a report of an
older generation (the old pods of a rollout) is answered and not kept. deployments.deployment_refresh shows it.

What is kept is rebuilt from what the platform knows, never copied: the components' kinds from the registry, each
one's ok and its code from the taxonomy — a kind or a code the platform does not know is a malformed report (400).
The runtime's hint is not kept (the page shows the platform's hint for the code), nor any text, host or secret."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.utils import timezone

from byoi.errors import HINTS
from byoi.registry import KINDS

from .deployments import READINESS_MAX_AGE
from .models import Deployment, RuntimeReadiness
from .runtime_usage import ReportRefused

MAX_INSTANCES = 50  # pods of one deployment kept at once (a Deployment has a replica or a few)
STATUSES = {"ready": True, "not ready": False}


@dataclass(frozen=True)
class ReadinessReport:
    chatbot_id: uuid.UUID
    instance: uuid.UUID
    generation: int
    ready: bool
    components: dict  # {kind: {"ok": bool, "code": str | None}}


def readiness_parse(chatbot_id: uuid.UUID, body: dict) -> ReadinessReport:
    try:
        instance = uuid.UUID(str(body.get("instance")))
    except ValueError:
        raise ReportRefused(400, "instance must be a UUID") from None
    generation = body.get("generation")
    if type(generation) is not int or not 1 <= generation <= 2**31:
        raise ReportRefused(400, "generation must be a whole number from 1")
    if body.get("status") not in STATUSES:
        raise ReportRefused(400, "status must be 'ready' or 'not ready'")
    given = body.get("components")
    if not isinstance(given, dict) or not given or not set(given) <= set(KINDS):
        raise ReportRefused(400, f"components must map some of {', '.join(KINDS)} to their state")
    components = {}
    for kind in KINDS:
        if kind not in given:
            continue
        entry = given[kind]
        if not isinstance(entry, dict) or type(entry.get("ok")) is not bool:
            raise ReportRefused(400, f"components.{kind}.ok must be true or false")
        if entry["ok"]:
            components[kind] = {"ok": True, "code": None}
        elif entry.get("code") in HINTS:
            components[kind] = {"ok": False, "code": entry["code"]}
        else:
            raise ReportRefused(400, f"components.{kind}.code must be one of the taxonomy's codes")
    return ReadinessReport(chatbot_id, instance, generation, STATUSES[body["status"]], components)


def runtime_readiness_record(report: ReadinessReport) -> dict:
    """Keep the report if it is of the deployment's current generation; forget what is older than a minute or of
    another generation. Returns {"kept": bool}."""
    deployment = Deployment.objects.filter(chatbot_id=report.chatbot_id).first()
    if deployment is None:
        raise ReportRefused(404, "No such deployed chatbot.")
    now = timezone.now()
    RuntimeReadiness.objects.filter(deployment=deployment).exclude(
        generation=deployment.generation, reported__gte=now - READINESS_MAX_AGE).delete()
    kept = report.generation == deployment.generation and deployment.status != Deployment.Status.STOPPED
    if kept:
        RuntimeReadiness.objects.update_or_create(
            deployment=deployment, instance=report.instance,
            defaults={"generation": report.generation, "ready": report.ready, "components": report.components,
                      "reported": now})
        stale = (RuntimeReadiness.objects.filter(deployment=deployment).order_by("-reported")
                 .values_list("pk", flat=True)[MAX_INSTANCES:])
        RuntimeReadiness.objects.filter(pk__in=list(stale)).delete()
    return {"kept": kept}


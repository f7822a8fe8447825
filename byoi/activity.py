"""A chatbot's connection log for its owners: what changed in its BYOI settings, every Test Connection's outcome,
and the times WizChat could not reach one of their components while answering, ingesting or storing messages.

Built from the audit events (field names, hosts and outcome codes, never a secret), newest first. Runtime failures of a
customer's component are recorded at most once per component, code and activity every FAILURE_QUIET_MINUTES,
so an outage of their database does not write a row per question."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from byoi.audit import audit_record
from byoi.models import AuditEvent
from byoi.registry import KINDS, label

FAILURE_QUIET_MINUTES = 10
SHOWN = ("byoi.enabled", "byoi.disabled", "byoi.component_saved", "byoi.component_enabled",
         "byoi.component_disabled", "byoi.component_deleted", "byoi.connection_test_finished",
         "byoi.data_migrated", "byoi.component_failed", "byoi.outbox_drained")


@dataclass
class Entry:
    when: datetime
    who: str
    text: str
    outcome: str  # "ok", "failed" or "info"


def _field_labels(kind: str, names: list[str]) -> list[str]:
    """The changed fields' labels, in the form's order."""
    if kind not in KINDS:
        return list(names)
    return [f.label for f in KINDS[kind].fields if f.name in names]


def _describe(action: str, d: dict) -> tuple[str, str]:
    kind_label = label(d.get("kind", ""))
    if action == "byoi.enabled":
        return "BYOI switched on", "info"
    if action == "byoi.disabled":
        return "BYOI switched off: every component uses WizChat's defaults", "info"
    if action == "byoi.component_saved":
        changed = _field_labels(d.get("kind", ""), d.get("changed") or [])
        return f"{kind_label} settings saved" + (f" (changed: {', '.join(changed)})" if changed else ""), "info"
    if action == "byoi.component_enabled":
        return f"{kind_label} switched on", "info"
    if action == "byoi.component_disabled":
        return f"{kind_label} switched off: WizChat's default is used", "info"
    if action == "byoi.component_deleted":
        return f"{kind_label} settings removed", "info"
    if action == "byoi.connection_test_finished":
        if d.get("state") == "ok":
            return f"Test Connection of {kind_label} passed", "ok"
        return f"Test Connection of {kind_label} failed ({d.get('error_code') or d.get('state')})", "failed"
    if action == "byoi.data_migrated":
        to = "your infrastructure" if d.get("to") == "custom" else "WizChat's defaults"
        return f"{kind_label} data copied to {to} ({d.get('copied', 0):,} items)", "info"
    if action == "byoi.component_failed":
        where = f" ({d['host']})" if d.get("host") else ""
        return f"{kind_label}{where} failed while {d.get('during', 'in use')} ({d.get('code')})", "failed"
    if action == "byoi.outbox_drained":
        return f"{kind_label} reachable again: the messages queued meanwhile are delivered", "ok"
    return action, "info"


def activity_list(chatbot, limit: int = 25) -> list[Entry]:
    events = (AuditEvent.objects.filter(chatbot_id=chatbot.id, action__in=SHOWN)
              .select_related("actor").order_by("-created")[:limit])
    entries = []
    for event in events:
        text, outcome = _describe(event.action, event.detail or {})
        who = event.actor.get_username() if event.actor else "WizChat"
        entries.append(Entry(when=event.created, who=who, text=text, outcome=outcome))
    return entries


def component_failure_record(chatbot, *, kind: str, code: str, during: str, host: str = "") -> bool:
    """Log that one of the customer's components failed while WizChat used it; False when the same failure
    was already logged within FAILURE_QUIET_MINUTES."""
    since = timezone.now() - timedelta(minutes=FAILURE_QUIET_MINUTES)
    recent = AuditEvent.objects.filter(chatbot_id=chatbot.id, action="byoi.component_failed", created__gte=since,
                                       detail__kind=kind, detail__code=code, detail__during=during)
    if recent.exists():
        return False
    audit_record("byoi.component_failed", chatbot=chatbot, kind=kind, code=code, during=during, host=host)
    return True


def outbox_drained_record(chatbot) -> bool:
    """Log that the conversations database took every message queued while it was unreachable (once a minute
    at most: concurrent deliveries may each see the outbox empty)."""
    since = timezone.now() - timedelta(minutes=1)
    if AuditEvent.objects.filter(chatbot_id=chatbot.id, action="byoi.outbox_drained", created__gte=since).exists():
        return False
    audit_record("byoi.outbox_drained", chatbot=chatbot, kind="conversations")
    return True

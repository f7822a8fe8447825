"""A chatbot's connection log for its owners: what changed in its BYOI settings, every Test Connection's outcome,
and the times WizChat could not reach one of their components while answering, ingesting or storing messages.

Built from the audit events (field names, hosts and outcome codes, never a secret), newest first. Runtime failures of a
customer's component are recorded at most once per component, code and activity every FAILURE_QUIET_MINUTES,
so an outage of their database does not write a row per question.

The same failures mark the component failing on the chatbot page (`traffic_*` fields); the first call that works
again afterwards marks it recovered. Working calls cost no database write: each process keeps the set of
components currently marked failing, reloaded every FAILING_RELOAD_SECONDS."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from byoi.audit import audit_record
from byoi.models import AuditEvent, BYOIComponent
from byoi.registry import KINDS, label

FAILING_RELOAD_SECONDS = 15

FAILURE_QUIET_MINUTES = 10
SHOWN = ("byoi.enabled", "byoi.disabled", "byoi.component_saved", "byoi.component_enabled",
         "byoi.component_disabled", "byoi.component_deleted", "byoi.connection_test_finished",
         "byoi.data_migrated", "byoi.component_failed", "byoi.component_recovered", "byoi.outbox_drained")


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
    if action == "byoi.component_recovered":
        return f"{kind_label} works again: WizChat reached it while {d.get('during', 'in use')}", "ok"
    if action == "byoi.outbox_drained":
        return f"{kind_label} reachable again: the messages queued meanwhile are delivered", "ok"
    return action, "info"


CONFIG_ACTIONS = ("byoi.enabled", "byoi.disabled", "byoi.component_saved", "byoi.component_enabled",
                  "byoi.component_disabled", "byoi.component_deleted")


def _quiet_saves(chatbot) -> tuple[set[int], set[int]]:
    """(saves that changed nothing, saves that switched a component back on). A form saves every switched-on
    component; only what changed belongs in the log. Walks the chatbot's configuration events, oldest first."""
    events = (AuditEvent.objects.filter(chatbot_id=chatbot.id, action__in=CONFIG_ACTIONS)
              .order_by("created", "id").values_list("id", "action", "detail"))
    off: set[str] = set()  # kinds whose component is switched off
    nothing, again = set(), set()
    for pk, action, detail in events:
        kind = (detail or {}).get("kind", "")
        if action == "byoi.component_disabled":
            off.add(kind)
        elif action in ("byoi.component_enabled", "byoi.component_deleted"):
            off.discard(kind)
        elif action == "byoi.component_saved":
            if not (detail or {}).get("created") and not (detail or {}).get("changed"):
                (again if kind in off else nothing).add(pk)
            if (detail or {}).get("enabled", True):
                off.discard(kind)
    return nothing, again


def _testers(events) -> dict[str, str]:
    """Who started each of these Test Connection runs (its "finished" event has no actor: a worker ran it)."""
    ids = [e.detail.get("test_id") for e in events
           if e.action == "byoi.connection_test_finished" and (e.detail or {}).get("test_id")]
    if not ids:
        return {}
    started = (AuditEvent.objects.filter(action="byoi.connection_test_started", detail__test_id__in=ids,
                                         actor__isnull=False).select_related("actor"))
    return {e.detail["test_id"]: e.actor.get_username() for e in started}


def activity_page(chatbot, page: int = 1, per_page: int = 25) -> tuple[list[Entry], bool]:
    """One page of the connection log, newest first, and whether older entries follow."""
    nothing, again = _quiet_saves(chatbot)
    page = max(1, page)
    events = list(AuditEvent.objects.filter(chatbot_id=chatbot.id, action__in=SHOWN).exclude(pk__in=nothing)
                  .select_related("actor").order_by("-created", "-id")[(page - 1) * per_page:page * per_page + 1])
    more = len(events) > per_page
    events = events[:per_page]
    testers = _testers(events)
    entries = []
    for event in events:
        detail = event.detail or {}
        if event.pk in again:
            text, outcome = f"{label(detail.get('kind', ''))} switched on", "info"
        else:
            text, outcome = _describe(event.action, detail)
        who = event.actor.get_username() if event.actor else testers.get(detail.get("test_id"), "WizChat")
        entries.append(Entry(when=event.created, who=who, text=text, outcome=outcome))
    return entries, more


def activity_list(chatbot, limit: int = 25) -> list[Entry]:
    return activity_page(chatbot, 1, limit)[0]


def component_failure_record(chatbot, *, kind: str, code: str, during: str, host: str = "") -> bool:
    """Log that one of the customer's components failed while WizChat used it; False when the same failure
    was already logged within FAILURE_QUIET_MINUTES."""
    since = timezone.now() - timedelta(minutes=FAILURE_QUIET_MINUTES)
    recent = AuditEvent.objects.filter(chatbot_id=chatbot.id, action="byoi.component_failed", created__gte=since,
                                       detail__kind=kind, detail__code=code, detail__during=during)
    if kind in KINDS:
        _mark_failing(chatbot.id, kind, code, during)
    if recent.exists():
        return False
    audit_record("byoi.component_failed", chatbot=chatbot, kind=kind, code=code, during=during, host=host)
    return True


# --- what real traffic says about a component: failing, or working again -------------------------------------

_lock = threading.Lock()
_failing: set[tuple[str, str]] = set()  # (chatbot id, kind) marked failing, as this process last loaded them
_loaded_at = float("-inf")


def _mark_failing(chatbot_id, kind: str, code: str, during: str) -> None:
    """The chatbot's component of `kind` failed in real traffic just now (one UPDATE; failures are rare)."""
    now = timezone.now()
    # "Failing since" restarts when a Test Connection passed after the earlier failure.
    since = Case(When(Q(traffic_failing_since__isnull=True) | Q(last_checked__gt=F("traffic_failing_since")),
                      then=Value(now)), default=F("traffic_failing_since"))
    BYOIComponent.objects.filter(chatbot_id=chatbot_id, kind=kind).update(
        traffic_seen=now, traffic_failing_since=since, traffic_error_code=code[:32], traffic_during=during[:40],
        traffic_fingerprint=F("fingerprint"))
    with _lock:
        _failing.add((str(chatbot_id), kind))


def _failing_reload() -> None:
    """Reload the components marked failing every FAILING_RELOAD_SECONDS (another process, a Celery worker
    say, may have marked them)."""
    global _loaded_at
    with _lock:
        if time.monotonic() - _loaded_at < FAILING_RELOAD_SECONDS:
            return
    rows = BYOIComponent.objects.filter(traffic_failing_since__isnull=False).values_list("chatbot_id", "kind")
    loaded = {(str(chatbot_id), kind) for chatbot_id, kind in rows}
    with _lock:
        _failing.clear()
        _failing.update(loaded)
        _loaded_at = time.monotonic()


def failing_forget() -> None:
    """Reload the failing components at the next call (tests; a process that cleared them by hand)."""
    global _loaded_at
    with _lock:
        _failing.clear()
        _loaded_at = float("-inf")


def component_success_record(chatbot, stack, kinds, during: str, *, log: bool = True) -> list[str]:
    """Real traffic reached the chatbot's components of `kinds` just now (`stack`: the one it went through,
    to skip WizChat's defaults; None when the caller knows they were the customer's). Those marked failing are
    marked working again, and unless `log` is off the connection log says so; for the others this costs no
    database access, only a look at this process's set. Returns the kinds marked recovered."""
    if stack is not None:
        kinds = [kind for kind in kinds if stack.sources.get(kind) == "custom"]
    if not kinds:
        return []
    key = str(chatbot.id)
    _failing_reload()
    with _lock:
        candidates = [kind for kind in kinds if (key, kind) in _failing]
    recovered = []
    for kind in candidates:
        now = timezone.now()
        updated = BYOIComponent.objects.filter(chatbot_id=chatbot.id, kind=kind,
                                               traffic_failing_since__isnull=False).update(
            traffic_seen=now, traffic_failing_since=None, traffic_error_code="", traffic_during=during[:40],
            traffic_fingerprint=F("fingerprint"))
        with _lock:
            _failing.discard((key, kind))
        if updated and log:
            audit_record("byoi.component_recovered", chatbot=chatbot, kind=kind, during=during)
        if updated:
            recovered.append(kind)
    return recovered


def outbox_drained_record(chatbot) -> bool:
    """Log that the conversations database took every message queued while it was unreachable (once a minute
    at most: concurrent deliveries may each see the outbox empty)."""
    since = timezone.now() - timedelta(minutes=1)
    if AuditEvent.objects.filter(chatbot_id=chatbot.id, action="byoi.outbox_drained", created__gte=since).exists():
        return False
    audit_record("byoi.outbox_drained", chatbot=chatbot, kind="conversations")
    return True

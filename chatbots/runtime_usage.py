"""Deployed runtimes report the messages they answer, so that the plan's monthly quota counts them as it counts
the platform's own (conversations.services.message_quota_use).

A runtime has no platform database (by design: wizchat.runtime.settings), so it counts each exchange in its
state folder and POSTs what it has not reported yet to `/internal/runtimes/usage` every few seconds
(wizchat.runtime.usage); the answer tells it the account's count and limit for the month, which it enforces
itself. The runtime reaches out rather than the platform pulling, because a runtime the platform cannot reach
(one on Kubernetes behind a Service only, or — on the roadmap — one inside the customer's network) can still
reach the platform.

Exactly once: a runtime numbers its batches (`seq` 1, 2, 3 … under the `instance` id of its state folder) and
resends the oldest one until it gets an answer; the platform remembers the last batch counted per runtime
(RuntimeUsageCursor), in the transaction that adds the count, so a batch applied whose answer was lost is
answered again and not counted twice.

Authentication: the deployment's platform token (WIZCHAT_PLATFORM_TOKEN), a keyed digest of the chatbot's id
under SECRET_KEY. The platform stores no copy: it derives the expected token and compares in constant time,
before any database query."""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import date

from django.db import transaction
from django.utils import timezone

from conversations.services import message_usage_add, messages_in_month

from .deployments import platform_token
from .models import Chatbot, Deployment, RuntimeUsageCursor

MAX_MESSAGES_PER_REPORT = 1_000_000  # more than any plan's month: a larger number is a bug, not usage
MONTHS_BACK = 2  # a runtime that was cut off may report a month or two late; older reports are refused


class ReportRefused(Exception):
    """`status`: 401 (not a runtime of a deployed chatbot), 404 (the chatbot is gone), 400 (malformed)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class UsageReport:
    chatbot_id: uuid.UUID
    instance: uuid.UUID
    seq: int | None  # None: nothing to count, only asking for the count and the limit
    month: date
    messages: int


def _month_of(text) -> date:
    match = re.fullmatch(r"(\d{4})-(\d{2})", str(text or ""))
    if not match:
        raise ReportRefused(400, "month must be YYYY-MM")
    try:
        month = date(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ReportRefused(400, "month must be YYYY-MM") from None
    current = timezone.now().date()
    if not 0 <= (current.year * 12 + current.month) - (month.year * 12 + month.month) <= MONTHS_BACK:
        raise ReportRefused(400, "month must be this month or one of the two before")
    return month


def _whole(value, name: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ReportRefused(400, f"{name} must be a whole number from {low} to {high}")
    return value


def report_authenticate(body, presented: str) -> uuid.UUID:
    """The chatbot whose runtime sent `body` with the token `presented`; ReportRefused(401) otherwise. Only a
    digest is computed: no database query for a caller without the token."""
    try:
        chatbot_id = uuid.UUID(str(body.get("chatbot")))
    except (AttributeError, ValueError):
        chatbot_id = None
    expected = platform_token(chatbot_id or "none")
    if not (hmac.compare_digest(expected.encode(), (presented or "").encode()) and chatbot_id):
        raise ReportRefused(401, "A deployed runtime's platform token is required.")
    return chatbot_id


def report_parse(chatbot_id: uuid.UUID, body: dict) -> UsageReport:
    try:
        instance = uuid.UUID(str(body.get("instance")))
    except ValueError:
        raise ReportRefused(400, "instance must be a UUID") from None
    seq = body.get("seq")
    messages = _whole(body.get("messages", 0), "messages", 0, MAX_MESSAGES_PER_REPORT)
    if seq is None and messages:
        raise ReportRefused(400, "messages need a seq")
    return UsageReport(chatbot_id, instance, None if seq is None else _whole(seq, "seq", 1, 2**62),
                       _month_of(body.get("month")), messages)


def runtime_usage_apply(report: UsageReport) -> dict:
    """Count the report's messages for the chatbot's account in its month, once. Returns
    {"month", "used", "limit", "plan", "byoi_allowed", "applied"} — `applied` false for a batch counted before;
    `byoi_allowed` false tells a runtime of the customer's own components that the plan lost BYOI."""
    chatbot = (Chatbot.objects.select_related("account__plan").filter(pk=report.chatbot_id).first())
    if chatbot is None or not Deployment.objects.filter(chatbot=chatbot).exists():
        raise ReportRefused(404, "No such deployed chatbot.")
    account, applied = chatbot.account, False
    if report.seq is None:
        used = messages_in_month(account, report.month)
    else:
        with transaction.atomic():
            cursor, _ = RuntimeUsageCursor.objects.select_for_update().get_or_create(
                chatbot=chatbot, instance=report.instance)
            if report.seq > cursor.seq:
                used = message_usage_add(account, report.month, report.messages)
                cursor.seq, cursor.messages = report.seq, cursor.messages + report.messages
                cursor.save(update_fields=["seq", "messages", "updated"])
                applied = True
            else:
                used = messages_in_month(account, report.month)
    plan = account.plan
    return {"month": report.month.strftime("%Y-%m"), "used": used, "limit": plan.max_messages_per_month,
            "plan": plan.name, "byoi_allowed": plan.byoi_allowed, "applied": applied}

"""Conversations over the chatbot's conversations backend (the platform database by default, the customer's
with BYOI). A message that cannot be written because the customer's database is unreachable goes to the
Outbox and a Celery retry delivers it later; the message id makes delivery idempotent."""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import Future
from dataclasses import asdict
from datetime import date

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from byoi.access import (
    ComponentBusy,
    ComponentFailed,
    component,
    component_key,
    component_slots,
    failure_record,
    provision_once,
    resolve_stack,
)
from byoi.backends.base import Message
from byoi.isolation import Lanes
from wizchat.celery import send_on_commit
from wizchat.plans import plan_check_message_limit

from .models import MessageUsage, Outbox

log = logging.getLogger(__name__)


def message_new(conversation_id: str, role: str, content: str, metadata: dict | None = None) -> Message:
    return Message(id=uuid.uuid4().hex, conversation_id=conversation_id, role=role, content=content,
                   created=timezone.now().isoformat(), metadata=metadata or {})


def _append(stack, chatbot, message: Message) -> bool:
    """The backend call alone (no Django): safe in a worker thread."""
    provision_once(stack, "conversations", chatbot.id)
    with component(stack, "conversations") as store:
        return store.append(chatbot.id, message)


# Storing the question runs while the answer streams; the answer is stored after it, in order. The threads are
# shared by every chatbot, but a customer's conversations database may hold only STORE_THREADS_PER_COMPONENT
# of them: one that stopped answering cannot make other chatbots' messages wait (byoi.isolation.Lanes).
STORE_THREADS = 16
STORE_THREADS_PER_COMPONENT = 2
_STORE_LANES = Lanes("wizchat-store", STORE_THREADS)


def conversation_append_start(chatbot, message: Message, stack, queued: bool | None = None) -> Future | None:
    """Start storing the first message of an exchange in the background. None when the chatbot has queued
    messages (then everything goes through conversation_append to keep the order), or when its database's
    share of the threads is in use (then it is stored at the end, in the caller's thread). `queued`: whether
    it has queued messages, when the caller has just asked (None: ask here)."""
    if queued is None:
        queued = Outbox.objects.filter(chatbot=chatbot).exists()
    if queued:
        return None
    custom = stack.sources.get("conversations") == "custom"
    return _STORE_LANES.submit(component_key(stack, "conversations"),
                               STORE_THREADS_PER_COMPONENT if custom else STORE_THREADS, _append, stack, chatbot,
                               message)


def conversation_append_finish(chatbot, pending: Future | None, first: Message, *rest: Message, stack) -> str:
    """Complete what conversation_append_start began: wait for `first`, then store `rest` after it."""
    if pending is None:
        return conversation_append(chatbot, first, *rest, stack=stack)
    try:
        outcome = "stored" if pending.result() else "duplicate"
    except ComponentFailed as failure:
        log.warning("Conversations store of chatbot %s failed (%s); messages queued", chatbot.id, failure.code)
        for message in (first, *rest):
            outbox_put(chatbot, message, failure)
        return "queued"
    queued = False
    for message in rest:
        if queued:
            outbox_put(chatbot, message, None)
            continue
        try:
            outcome = "stored" if _append(stack, chatbot, message) else "duplicate"
        except ComponentFailed as failure:
            outbox_put(chatbot, message, failure)
            queued, outcome = True, "queued"
    return outcome


def conversation_append(chatbot, *messages: Message, stack=None) -> str:
    """Store messages in order: "stored", "duplicate" (the last was already stored) or "queued" (in the
    outbox because the conversations database failed; a Celery retry delivers it)."""
    stack = stack or resolve_stack(chatbot)
    queued = Outbox.objects.filter(chatbot=chatbot).exists()
    if queued:
        outbox_flush(chatbot, stack)  # keep the order: older undelivered messages first
        queued = Outbox.objects.filter(chatbot=chatbot).exists()
    outcome = "stored"
    for message in messages:
        if queued:
            outbox_put(chatbot, message, None)
            outcome = "queued"
            continue
        try:
            outcome = "stored" if _append(stack, chatbot, message) else "duplicate"
        except ComponentFailed as failure:
            log.warning("Conversations store of chatbot %s failed (%s); message queued", chatbot.id, failure.code)
            outbox_put(chatbot, message, failure)
            queued, outcome = True, "queued"
    return outcome


def outbox_put(chatbot, message: Message, failure: ComponentFailed | None) -> Outbox:
    message_id = message.id
    if failure is not None:
        failure_record(chatbot, failure, "saving messages")
    row, _ = Outbox.objects.get_or_create(
        message_id=message.id,
        defaults={"chatbot": chatbot, "payload": json.dumps(asdict(message)),
                  "error_code": failure.code if failure else "", "error_message": str(failure) if failure else ""},
    )
    from .tasks import outbox_deliver_task

    # Unsent (the broker is down): the row stays queued and goes out with the chatbot's next message (outbox_flush).
    send_on_commit(outbox_deliver_task, row.id, countdown=2,
                   unsent=lambda _: log.warning("Outbox message %s not queued (the broker cannot be reached): it goes "
                                                 "out with the chatbot's next message", message_id))
    return row


def outbox_deliver(outbox_id: int) -> str:
    """Deliver one outbox message: "delivered" (or already delivered) or raises ComponentFailed — or
    ComponentBusy while another worker is already delivering to the same customer database (one at a time:
    a database that stopped answering holds one worker, not all of them)."""
    row = Outbox.objects.select_related("chatbot__account__plan").filter(pk=outbox_id).first()
    if row is None:
        return "gone"
    stack = resolve_stack(row.chatbot)
    message = Message(**json.loads(row.payload))
    with component_slots(stack, ("conversations",)) as free:
        if not free:
            raise ComponentBusy(row.chatbot_id)
        try:
            _append(stack, row.chatbot, message)  # the message id makes a second delivery a no-op
        except ComponentFailed as failure:
            Outbox.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1, last_attempt=timezone.now(),
                                                    error_code=failure.code, error_message=str(failure))
            raise
    row.delete()
    _note_if_drained(row.chatbot)
    return "delivered"


def outbox_flush(chatbot, stack=None) -> int:
    """Deliver the chatbot's outbox in order; stops at the first failure. Returns how many were delivered."""
    stack = stack or resolve_stack(chatbot)
    delivered = 0
    for row in Outbox.objects.filter(chatbot=chatbot).order_by("created", "id"):
        try:
            _append(stack, chatbot, Message(**json.loads(row.payload)))
        except ComponentFailed:
            break
        row.delete()
        delivered += 1
    if delivered:
        _note_if_drained(chatbot)
    return delivered


def _note_if_drained(chatbot) -> None:
    """The customer's conversations database took queued messages: the chatbot page shows it working again,
    and once the outbox is empty the connection log says so."""
    from byoi.activity import component_success_record, outbox_drained_record

    component_success_record(chatbot, None, ["conversations"], "saving messages", log=False)
    if not Outbox.objects.filter(chatbot=chatbot).exists():
        outbox_drained_record(chatbot)


def conversation_list(chatbot, stack=None, limit: int = 20) -> list[dict]:
    stack = stack or resolve_stack(chatbot)
    with component(stack, "conversations") as store:
        return store.conversations(chatbot.id, limit=limit)


def conversation_history(chatbot, conversation_id: str, stack=None, limit: int = 100) -> list[Message]:
    stack = stack or resolve_stack(chatbot)
    with component(stack, "conversations") as store:
        return store.history(chatbot.id, conversation_id, limit=limit)


def _month() -> date:
    return timezone.now().date().replace(day=1)


_QUOTA_UPDATE = (
    "UPDATE conversations_messageusage SET messages = messages + 1 "
    "WHERE account_id = %s AND month = %s AND messages < %s "
    "AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
)


def message_quota_use(account) -> None:
    """Count one question against the plan's monthly quota; PlanLimitReached when it is used up.
    One conditional UPDATE in the common case, so concurrent questions cannot overshoot the limit."""
    limit, month = account.plan.max_messages_per_month, _month()
    # A usage counter need not wait for the disk flush on every question (the flush is most of the cost of
    # this UPDATE); a crash can at worst forget the last few counts. set_config(..., true) is SET LOCAL inside
    # the statement's own transaction: one round trip instead of BEGIN, SET LOCAL, UPDATE, COMMIT.
    with connection.cursor() as cursor:
        cursor.execute(_QUOTA_UPDATE, [account.pk, month, limit])
        if cursor.rowcount:
            return
    with transaction.atomic():
        usage, _ = MessageUsage.objects.select_for_update().get_or_create(account=account, month=month)
        plan_check_message_limit(account, usage.messages)
        usage.messages += 1
        usage.save(update_fields=["messages"])


def message_usage_add(account, month: date, messages: int) -> int:
    """Add questions a deployed runtime already answered (chatbots.runtime_usage) to `month`'s count, past the
    limit if need be: they were served, so they count. Returns the month's count after. Call it inside the
    transaction that records the report, so that the count and the report are kept or lost together."""
    usage, _ = MessageUsage.objects.select_for_update().get_or_create(account=account, month=month)
    if messages:
        usage.messages += messages
        usage.save(update_fields=["messages"])
    return usage.messages


def messages_in_month(account, month: date) -> int:
    usage = MessageUsage.objects.filter(account=account, month=month).first()
    return usage.messages if usage else 0


def messages_this_month(account) -> int:
    usage = MessageUsage.objects.filter(account=account, month=_month()).first()
    return usage.messages if usage else 0

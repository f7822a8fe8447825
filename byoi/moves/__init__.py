"""Dashboard data moves: a saved BYOI change that switches a chatbot's stores waits for its data to follow.

How nothing is lost: the settings page saves the change *held* (byoi.forms.ByoiPanel.save(hold=…)): a store
it turns on is saved disabled, a store it turns off stays enabled, so chat, ingestion and conversations keep
using the old stores. A DataMove row records what to switch. The job (byoi.moves.tasks.data_move_task) copies with
the operators' code (byoi.datamove: id order, skips what the target holds, re-embeds on a dimension change,
never deletes the source), then verifies by reading every source id again and asking the target for it
(a dry run that must find nothing left to copy; a second copy round picks up what arrived meanwhile). Only
then are the components switched, and one last pass copies what reached the old store during the switch.
A failure leaves the chatbot on its old stores; Retry resumes where the copy stopped."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from byoi import resolver
from byoi.audit import audit_record
from byoi.datamove import MigrationFailed, MigrationInvalid, Result, Side, migration_plan, migration_run
from byoi.errors import NotFound, classify
from byoi.models import BYOIComponent, DataMove
from byoi.registry import STORE_KINDS
from byoi.services import byoi_set_enabled, component_disable, component_set_enabled
from wizchat.celery import send_on_commit

from .tasks import data_move_task

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
VERIFY_ROUNDS = 3  # copy → verify rounds before giving up (chat may add messages to the old store meanwhile)
State = DataMove.State


def data_move_offer(chatbot, *, switch_on, switch_off, byoi_off: bool = False, reembed: bool = False,
                    actor=None) -> DataMove:
    """Record a held switch and offer to copy the data. Any earlier open offer of the chatbot is superseded
    (the new save already describes the whole pending change)."""
    with transaction.atomic():
        DataMove.objects.filter(chatbot=chatbot).exclude(state__in=[State.DONE, State.CANCELLED]).update(
            state=State.CANCELLED, finished=timezone.now())
        move = DataMove.objects.create(chatbot=chatbot, actor=actor, switch_on=sorted(switch_on),
                                       switch_off=sorted(switch_off), byoi_off=byoi_off, reembed=reembed)
        audit_record("byoi.data_move_offered", chatbot=chatbot, actor=actor, move_id=str(move.id),
                     switch_on=move.switch_on, switch_off=move.switch_off, reembed=reembed)
    return move


def data_move_get_for_user(user, move_id) -> DataMove:
    if not getattr(user, "is_authenticated", False) or user.pk is None:
        raise NotFound("No account")
    try:
        return DataMove.objects.select_related("chatbot__account__plan").get(
            pk=move_id, chatbot__account__memberships__user_id=user.pk)
    except (DataMove.DoesNotExist, ValidationError, ValueError, TypeError):
        raise NotFound("No such data move") from None


def data_move_open(chatbot) -> DataMove | None:
    """The chatbot's move still holding a change back, if any."""
    return (DataMove.objects.filter(chatbot=chatbot).exclude(state__in=[State.DONE, State.CANCELLED])
            .order_by("-created").first())


def data_move_start(move: DataMove, actor=None) -> DataMove:
    """Queue the copy (first run or Retry: the copy resumes where it stopped)."""
    with transaction.atomic():
        move = DataMove.objects.select_for_update().get(pk=move.pk)
        if move.state not in (State.OFFERED, State.FAILED):
            return move
        move.state, move.error_code, move.error_message, move.error_hint = State.QUEUED, "", "", ""
        move.save(update_fields=["state", "error_code", "error_message", "error_hint"])
        audit_record("byoi.data_move_started", chatbot=move.chatbot, actor=actor, move_id=str(move.id),
                     attempt=move.attempts + 1)
        move_id = str(move.id)
        send_on_commit(data_move_task, move_id, unsent=lambda message: _unsent(move_id, message))
    return move


def _unsent(move_id: str, message: str) -> None:
    """The copy was never queued (the broker could not be reached): failed, so the page offers Retry."""
    DataMove.objects.filter(pk=move_id, state=State.QUEUED).update(
        state=State.FAILED, error_code="unavailable", error_message=message, error_hint="")


def data_move_cancel(move: DataMove, actor=None) -> DataMove:
    """Keep the current stores: the held change stays saved but is not applied (components saved off)."""
    with transaction.atomic():
        move = DataMove.objects.select_for_update().get(pk=move.pk)
        if move.state in (State.OFFERED, State.FAILED):
            move.state, move.finished = State.CANCELLED, timezone.now()
            move.save(update_fields=["state", "finished"])
            audit_record("byoi.data_move_cancelled", chatbot=move.chatbot, actor=actor, move_id=str(move.id))
    return move


def data_move_switch_now(move: DataMove, actor=None) -> DataMove:
    """Switch without copying: the data stays in the old stores (not deleted) and the new ones start empty."""
    with transaction.atomic():
        move = DataMove.objects.select_for_update().get(pk=move.pk)
        if move.state in (State.OFFERED, State.FAILED):
            _switch(move, actor)
            move.state, move.finished = State.DONE, timezone.now()
            move.save(update_fields=["state", "finished"])
            audit_record("byoi.data_move_skipped", chatbot=move.chatbot, actor=actor, move_id=str(move.id))
    return move


# --- the job ----------------------------------------------------------------------------------------------


def _plans(move: DataMove):
    """byoi.datamove plans for each direction of the move (a save may send one store out and another home)."""
    chatbot = move.chatbot
    plans = []
    for to, kinds in (("custom", move.switch_on), ("default", move.switch_off)):
        kinds = [k for k in STORE_KINDS if k in kinds]
        if not kinds:
            continue
        plan = migration_plan(chatbot, to, kinds, switch=True)  # switch=True: target components may be held off
        plan.switch = False  # this module switches, after verifying
        for step in plan.steps:
            if step.embeddings is not None:
                step.embeddings = _embeddings_after(move) or step.embeddings
        plans.append(plan)
    return plans


def _embeddings_after(move: DataMove) -> Side | None:
    """The embeddings the chatbot will search with once switched, when the move changes them."""
    if "embeddings" in move.switch_on:
        component = BYOIComponent.objects.get(chatbot=move.chatbot, kind="embeddings")
        return Side("embeddings", "custom", resolver.component_slot(component))
    if "embeddings" in move.switch_off or move.byoi_off:
        return Side("embeddings", "default", resolver.default_slot("embeddings"))
    return None


def _saver(move: DataMove):
    def on_batch(result: Result) -> None:
        move.progress[result.kind] = {"total": max(result.total, result.copied + result.skipped),
                                      "done": result.copied + result.skipped, "counted": result.counted_first}
        DataMove.objects.filter(pk=move.pk).update(progress=move.progress)
    return on_batch


def _copy(move: DataMove, plans) -> None:
    for plan in plans:
        migration_run(plan, batch_size=BATCH_SIZE, re_embed=move.reembed, on_batch=_saver(move))


def _missing(plans) -> dict[str, dict]:
    """Read every source id again and ask the target for it: {kind: {"source": n, "missing": m}}."""
    found = {}
    for plan in plans:
        for result in migration_run(plan, batch_size=BATCH_SIZE, dry_run=True):
            found[result.kind] = {"source": result.total, "missing": result.copied}
    return found


def data_move_run(move_id) -> DataMove:
    """Copy, verify, switch. Failures are recorded on the row with the taxonomy's code and hint."""
    move = DataMove.objects.select_related("chatbot__account__plan").get(pk=move_id)
    if move.state != State.QUEUED:
        return move
    move.state, move.started, move.attempts = State.RUNNING, timezone.now(), move.attempts + 1
    move.save(update_fields=["state", "started", "attempts"])
    try:
        plans = _plans(move)
        for _ in range(VERIFY_ROUNDS):
            _copy(move, plans)
            DataMove.objects.filter(pk=move.pk).update(state=State.VERIFYING)
            verified = _missing(plans)
            if not any(v["missing"] for v in verified.values()):
                break
        else:
            return _failed(move, "protocol", "The copy could not be verified: the new store is still missing "
                                             "some items.", "Try again: the copy continues where it stopped.")
        with transaction.atomic():
            current = DataMove.objects.select_for_update().get(pk=move.pk)
            if current.state == State.CANCELLED:  # superseded by a newer save while copying
                return current
            _switch(move, move.actor)
            move.state, move.verified, move.finished = State.DONE, verified, timezone.now()
            move.save(update_fields=["state", "verified", "finished", "progress"])
            audit_record("byoi.data_move_switched", chatbot=move.chatbot, actor=move.actor, move_id=str(move.id),
                         verified=verified)
    except MigrationFailed as error:
        return _failed(move, error.code, str(error), error.hint)
    except MigrationInvalid as error:
        return _failed(move, "invalid", str(error), "Check the BYOI settings, then try again.")
    except Exception as error:  # noqa: BLE001 - every failure is classified and shown
        failure = classify(error)
        return _failed(move, failure.code, failure.message, failure.hint)
    # What reached the old stores between the last check and the switch (a message, a document) follows too;
    # the old stores are only read, so a failure here loses nothing and is only logged.
    try:
        _copy(move, _plans(move))
    except Exception:  # noqa: BLE001
        logger.warning("Data move %s: the pass after the switch failed; the old store keeps its data", move.id)
    return move


def _failed(move: DataMove, code: str, message: str, hint: str) -> DataMove:
    move.state, move.error_code, move.error_message, move.error_hint = State.FAILED, code or "", message, hint or ""
    move.finished = timezone.now()
    move.save(update_fields=["state", "error_code", "error_message", "error_hint", "finished", "progress"])
    audit_record("byoi.data_move_failed", chatbot=move.chatbot, actor=move.actor, move_id=str(move.id),
                 error_code=move.error_code)
    return move


def _switch(move: DataMove, actor) -> None:
    chatbot = move.chatbot
    components = {c.kind: c for c in BYOIComponent.objects.filter(chatbot=chatbot).select_related("chatbot__account")}
    for kind in move.switch_on:
        if kind in components:
            component_set_enabled(components[kind], True, actor=actor)
    if move.switch_on and not chatbot.byoi_enabled:
        byoi_set_enabled(chatbot, True, actor=actor)
    for kind in move.switch_off:
        component_disable(chatbot, kind, actor=actor)
    if move.byoi_off:
        byoi_set_enabled(chatbot, False, actor=actor)

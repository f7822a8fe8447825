"""Test Connection: the spec's validation checklist as ordered steps, stopping at the first failure.

Each kind's module (llm.py, embeddings.py, vector_store.py, graph.py, conversations.py) defines
`steps(settings) -> list[Step]`. A step's `run(ctx)` returns an optional detail string or raises
`BackendError`; `cleanup(ctx)` functions run at the end whatever happened (probe rows removed).

A step that works but should not stay as it is (no encryption, admin credentials, pgvector to be installed)
returns `Warned(detail)`: its status is "warning", the run goes on and passes — the spec's best practices are
advice, not requirements."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.utils.module_loading import import_string

from byoi.errors import BackendError, classify
from byoi.registry import KINDS
from byoi.scrub import scrub

logger = logging.getLogger(__name__)

STEP_LABELS = {
    "address": "Address allowed",
    "tcp": "TCP connection",
    "tls": "TLS",
    "auth": "Authentication",
    "version": "Version / extension",
    "extension": "pgvector",
    "permissions": "Permissions",
    "operation": "Operation",
}


class Warned(str):
    """A step's detail that is a warning: shown amber, the run continues and still passes."""


@dataclass
class Step:
    name: str  # one of STEP_LABELS
    run: Callable[[Context], str | None]
    label: str = ""


@dataclass
class Context:
    settings: dict
    state: dict = field(default_factory=dict)  # shared between steps (an open connection, a client…)
    cleanups: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class StepResult:
    name: str
    label: str
    status: str  # ok | warning | failed | skipped | pending
    code: str = ""
    message: str = ""
    hint: str = ""
    ms: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def probe_name() -> str:
    """A name no chatbot's table or graph can have (those end in a UUID's hex after chunks_/messages_)."""
    return f"wizchat_probe_{uuid.uuid4().hex[:12]}"


def check_plan(kind: str, settings: dict) -> list[Step]:
    steps = import_string(KINDS[kind].check)(settings)
    for step in steps:
        step.label = step.label or STEP_LABELS[step.name]
    return steps


def _known_secrets(kind: str, settings: dict) -> tuple[str, ...]:
    return tuple(str(settings[name]) for name in KINDS[kind].secret_fields if settings.get(name))


def _sanitized(error: BackendError, known: tuple[str, ...]) -> BackendError:
    message, hint = scrub(error.message, known), scrub(error.hint or "", known)
    if message == error.message and hint == (error.hint or ""):
        return error
    return BackendError(error.code, message, hint)


def check_run(kind: str, settings: dict, on_step: Callable[[list[StepResult]], None] | None = None) -> list[StepResult]:
    """Run the kind's checklist against `settings`; calls on_step(results so far) after each step.

    Never raises for a failing server: any exception inside a step becomes that step's failure with a
    code from the taxonomy and a plain message that quotes no secret."""
    known = _known_secrets(kind, settings)
    try:
        steps = check_plan(kind, settings)
    except BackendError as error:
        error = _sanitized(error, known)
        results = [StepResult("address", STEP_LABELS["address"], "failed", error.code, error.message, error.hint)]
        if on_step:
            on_step(results)
        return results
    except Exception:
        logger.exception("Test Connection checks for %s could not be prepared", kind)
        error = BackendError("unavailable", f"Test Connection is not available for the {KINDS[kind].label} "
                                            "component right now.")
        results = [StepResult("address", STEP_LABELS["address"], "failed", error.code, error.message, error.hint)]
        if on_step:
            on_step(results)
        return results
    results = [StepResult(s.name, s.label, "pending") for s in steps]
    ctx = Context(settings=settings)
    try:
        for i, step in enumerate(steps):
            started = time.monotonic()
            try:
                detail = step.run(ctx) or ""
            except Exception as exc:
                if isinstance(exc, BackendError):
                    error = exc
                else:
                    logger.warning("Test Connection step %s of %s raised %s", step.name, kind, type(exc).__name__,
                                   exc_info=True)
                    error = classify(exc, host=settings.get("host"), port=settings.get("port"))
                error = _sanitized(error, known)
                results[i] = StepResult(step.name, step.label, "failed", error.code, error.message, error.hint,
                                        int((time.monotonic() - started) * 1000))
                for j in range(i + 1, len(steps)):
                    results[j].status = "skipped"
                break
            results[i] = StepResult(step.name, step.label, "warning" if isinstance(detail, Warned) else "ok",
                                    message=scrub(str(detail), known), ms=int((time.monotonic() - started) * 1000))
            if on_step:
                on_step(results)
    finally:
        for cleanup in reversed(ctx.cleanups):
            try:
                cleanup()
            except Exception:  # noqa: S110 - a failed probe cleanup must not mask the check's result
                pass
    if on_step:
        on_step(results)
    return results

"""The BYOI access layer: how the chat, knowledge and conversation paths call a chatbot's components.

Every failure is reported with the component's name, where it runs and the taxonomy's fix hint — never a
500, never a silent fallback. It sits in byoi (it needs nothing above it) so that conversations, chatbots
and the operators' data move share it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from .activity import component_failure_record
from .errors import LIBRARY_RULES, BackendError, chain, classify
from .isolation import BREAKER, CircuitOpen
from .registry import label
from .resolver import resolve

log = logging.getLogger(__name__)

# WizChat's own defaults open their breaker only after this many failures in a row: one slow question must not
# pause every chatbot on the defaults. A customer's component opens on its first transient failure.
DEFAULT_THRESHOLD = 3

class ComponentFailed(Exception):
    """A component of the chatbot's stack failed. `str()` is a complete customer-facing sentence."""

    def __init__(self, kind: str, where: str, error: BackendError, custom_host: str | None = None,
                 retry_after: float | None = None):
        self.kind = kind
        # Seconds until the component's breaker lets a call through again (None: it is not open); a Celery retry
        # scheduled sooner would only be refused.
        self.retry_after = retry_after
        self.label = label(kind)
        self.where = where
        self.custom_host = custom_host  # where the customer's own component runs; None: a WizChat default
        self.error = error
        self.code = error.code
        self.message = error.message
        self.hint = error.hint
        super().__init__(f"{self.label} ({where}) failed: {error.message}")

    @property
    def transient(self) -> bool:
        # A BYOI setting or plan problem (kind "byoi") does not go away by waiting.
        return self.kind != "byoi" and self.error.transient

    def as_dict(self) -> dict:
        return {"component": self.label, "kind": self.kind, "where": self.where, "code": self.code,
                "message": str(self), "hint": self.hint}


def host_of(backend) -> str:
    values = getattr(backend, "settings", None) or {}
    if values.get("host"):
        return str(values["host"])
    if values.get("endpoint"):
        return urlsplit(str(values["endpoint"])).hostname or str(values["endpoint"])
    return ""


def _custom_host(stack, kind: str) -> str | None:
    """Where the customer's own component of `kind` runs ("" if unknown); None for a WizChat default."""
    if stack.sources.get(kind) != "custom":
        return None
    try:
        return stack.describe()[kind]["location"]
    except Exception:  # noqa: BLE001 - a summary only
        return host_of(getattr(stack, kind))


def _located(custom_host: str | None) -> str:
    if custom_host is None:
        return "WizChat default"
    return f"Your infrastructure ({custom_host})" if custom_host else "Your infrastructure"


def location(stack, kind: str) -> str:
    """'Your infrastructure (host)' for a custom component, 'WizChat default' otherwise."""
    return _located(_custom_host(stack, kind))


def component_key(stack, kind: str) -> str | None:
    """The component's settings fingerprint: its breaker's and thread share's key (None for a stack without)."""
    fingerprint = getattr(stack, "fingerprint", None)
    if not callable(fingerprint):
        return None
    try:
        return fingerprint(kind) or None
    except (KeyError, AttributeError):
        return None


def _is_custom(stack, kind: str) -> bool:
    return getattr(stack, "sources", {}).get(kind) == "custom"


def _from_component(error: BaseException) -> bool:
    """Whether the failure came from the component (a backend's BackendError, a socket, a driver's error) rather
    than from WizChat's own code in the block: only the first says anything about the component's health."""
    for link in chain(error):
        if isinstance(link, BackendError | OSError):
            return True
        if type(link).__module__.split(".")[0] in LIBRARY_RULES:
            return True
    return False


@contextmanager
def component(stack, kind: str):
    """Run a call to `stack.<kind>`; any failure becomes ComponentFailed naming the component.

    Every call passes the component's circuit breaker (byoi.isolation): while a component that failed recently
    cools down, the call fails at once with the same code instead of waiting for its timeout again."""
    admission = _admit(stack, kind)
    try:
        yield getattr(stack, kind)
    except ComponentFailed:
        BREAKER.released(admission)
        raise
    except Exception as error:  # noqa: BLE001 - every failure is classified and reported
        classified = classify(error)
        retry_after = None
        if _from_component(error):
            retry_after = BREAKER.failed(admission, classified, cooldown=settings.BYOI_BREAKER_COOLDOWN,
                                         max_cooldown=settings.BYOI_BREAKER_MAX_COOLDOWN,
                                         threshold=1 if _is_custom(stack, kind) else DEFAULT_THRESHOLD)
        else:
            BREAKER.released(admission)
        custom_host = _custom_host(stack, kind)
        raise ComponentFailed(kind, _located(custom_host), classified, custom_host, retry_after) from None
    except BaseException:  # an abandoned stream (GeneratorExit), an interrupt: nothing learnt about the component
        BREAKER.released(admission)
        raise
    else:
        BREAKER.succeeded(admission)


def _admit(stack, kind: str):
    probe_timeout = settings.BYOI_CONNECT_TIMEOUT + settings.BYOI_OPERATION_TIMEOUT + 1
    try:
        return BREAKER.admit(component_key(stack, kind), probe_timeout)
    except CircuitOpen as refused:
        custom_host = _custom_host(stack, kind)
        raise ComponentFailed(kind, _located(custom_host), refused.error, custom_host, refused.retry_in) from None


def failure_record(chatbot, failure: ComponentFailed, during: str) -> None:
    """Put a failure of one of the customer's own components (or of their BYOI settings) in the chatbot's
    connection log; failures of WizChat's defaults are WizChat's to watch, not the customer's."""
    if failure.kind != "byoi" and failure.custom_host is None:
        return
    try:
        component_failure_record(chatbot, kind=failure.kind, code=failure.code, during=during,
                                 host=failure.custom_host or "")
    except Exception:  # noqa: BLE001 - the log must never turn a reported failure into a crash
        log.exception("Could not log the failure of chatbot %s", chatbot.id)


def resolve_stack(chatbot):
    """byoi.resolve(chatbot); its failure (e.g. the plan no longer allows BYOI) becomes ComponentFailed."""
    try:
        return resolve(chatbot)
    except Exception as error:  # noqa: BLE001
        raise ComponentFailed("byoi", "your BYOI settings", classify(error)) from None


def provision_once(stack, kind: str, chatbot_id, *args) -> None:
    """Create the chatbot's tables/graph if missing. The backends remember what they provisioned (and forget
    it when a table is dropped behind their back), so calling this on every use is cheap."""
    with component(stack, kind) as backend:
        backend.provision(chatbot_id, *args)


# --- background work: a bounded share per component across processes ----------------------------------------

class ComponentBusy(Exception):
    """Another task holds this customer component's share of the workers: come back later (nothing failed)."""


_SLOT_NAMESPACE = 0x57495A43  # "WIZC": pg_try_advisory_lock(int4, int4) keys of task slots (provisioning uses bigint)


def _slot_key(fingerprint: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{fingerprint}:{index}".encode()).digest()[:4], "big", signed=True)


@contextmanager
def component_slots(stack, kinds, limit: int | None = None) -> Iterator[bool]:
    """Hold one of `limit` task slots of each of the stack's *customer* components among `kinds`, across every
    worker process (session advisory locks on the platform database, released when the block ends or the
    process dies). Yields False, holding nothing, when one of them is full: the task should come back later
    instead of taking a second worker to wait on the same customer's infrastructure. WizChat's defaults take
    no slot (their capacity is WizChat's to size)."""
    limit = max(1, int(limit if limit is not None else settings.BYOI_TASKS_PER_COMPONENT))
    keys = sorted({key for kind in kinds if _is_custom(stack, kind) and (key := component_key(stack, kind))})
    held: list[int] = []
    try:
        with connection.cursor() as cursor:
            for key in keys:
                for index in range(limit):
                    slot = _slot_key(key, index)
                    cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_SLOT_NAMESPACE, slot])
                    if cursor.fetchone()[0]:
                        held.append(slot)
                        break
                else:
                    break
        full = len(held) < len(keys)
        yield not full
    finally:
        if held:
            try:
                with connection.cursor() as cursor:
                    for slot in held:
                        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_SLOT_NAMESPACE, slot])
            except Exception:  # noqa: BLE001 - a lost connection released them already
                log.warning("Could not release task slots", exc_info=True)

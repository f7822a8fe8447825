"""The BYOI access layer: how the chat, knowledge and conversation paths call a chatbot's components.

Every failure is reported with the component's name, where it runs and the taxonomy's fix hint — never a
500, never a silent fallback. It sits in byoi (it needs nothing above it) so that conversations, chatbots
and the operators' data move share it."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from urllib.parse import urlsplit

from .activity import component_failure_record
from .errors import BackendError, classify
from .registry import label
from .resolver import resolve

log = logging.getLogger(__name__)

class ComponentFailed(Exception):
    """A component of the chatbot's stack failed. `str()` is a complete customer-facing sentence."""

    def __init__(self, kind: str, where: str, error: BackendError, custom_host: str | None = None):
        self.kind = kind
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


@contextmanager
def component(stack, kind: str):
    """Run a call to `stack.<kind>`; any failure becomes ComponentFailed naming the component."""
    try:
        yield getattr(stack, kind)
    except ComponentFailed:
        raise
    except Exception as error:  # noqa: BLE001 - every failure is classified and reported
        custom_host = _custom_host(stack, kind)
        raise ComponentFailed(kind, _located(custom_host), classify(error), custom_host) from None


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

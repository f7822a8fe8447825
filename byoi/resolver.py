"""Which backend serves each of a chatbot's five components: its enabled BYOI component, or the default.

Every caller (chat, ingestion, tasks, commands) goes through `resolve(chatbot)`; a deployed standalone
runtime uses `resolve_from_env(environ)` (CUSTOM_* variables only). Backend instances are built on first
use and cached per settings fingerprint; when a component's settings change, its old instance is closed."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.utils.module_loading import import_string

from .envvars import env_to_settings
from .errors import BackendError
from .fingerprint import fingerprint
from .registry import KINDS, label

KIND_ORDER = list(KINDS)  # the registry's order: llm, embeddings, vector_store, graph, conversations


class ByoiUnavailable(BackendError):
    """The chatbot is set to use its own components but may not (plan downgraded). Never fall back silently."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__("unavailable", message, hint or (
            "Upgrade the plan to resume BYOI, or disable BYOI for this chatbot to use WizChat's default "
            "infrastructure (data in your own infrastructure is not migrated)."))


# --- the instance cache -----------------------------------------------------------------------------------

_lock = threading.RLock()
_instances: dict[str, object] = {}  # fingerprint -> backend instance
_users: dict[str, set] = {}  # fingerprint -> owners (component ids, "default:<kind>", "env:<kind>")
_owner_fp: dict[object, str] = {}  # owner -> fingerprint it last used
def _close(instance) -> None:
    try:
        instance.close()
    except Exception:  # noqa: S110 - closing a dead pool must not break the request that replaces it
        pass


def _release(owner) -> None:
    """Forget `owner`'s instance; close it when nothing else uses the same settings. Caller holds _lock."""
    old = _owner_fp.pop(owner, None)
    if old is None:
        return
    users = _users.get(old, set())
    users.discard(owner)
    if not users:
        _users.pop(old, None)
        instance = _instances.pop(old, None)
        if instance is not None:
            _close(instance)


def _instance(owner, fingerprint: str, backend_path: str, settings: dict):
    with _lock:
        if _owner_fp.get(owner) != fingerprint:
            _release(owner)
        instance = _instances.get(fingerprint)
        if instance is None:
            instance = import_string(backend_path)(settings)
            _instances[fingerprint] = instance
        _users.setdefault(fingerprint, set()).add(owner)
        _owner_fp[owner] = fingerprint
        return instance


def invalidate(component_id) -> None:
    """Drop (and close) the cached backend of a component whose settings or state changed."""
    with _lock:
        _release(component_id)


def clear_cache() -> None:
    with _lock:
        for instance in _instances.values():
            _close(instance)
        _instances.clear()
        _users.clear()
        _owner_fp.clear()


def cached_count() -> int:
    with _lock:
        return len(_instances)


# --- the stack --------------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One component of a stack: which backend class, with which settings (secrets included), cached under
    which fingerprint. Built by default_slot, component_slot or resolve_from_env."""

    kind: str
    source: str  # custom | default
    backend: str  # dotted path
    settings: dict = field(repr=False)
    owner: object = None
    fingerprint: str = ""

    def location(self) -> str:
        return location_summary(self.kind, self.settings, self.backend)

    def instance(self):
        """The backend, from the instance cache (built on first use)."""
        return _instance(self.owner, self.fingerprint, self.backend, self.settings)


class Stack:
    """The five backends of one chatbot, built on first use. `sources` says which are custom."""

    def __init__(self, slots: dict[str, Slot]):
        self._slots = slots
        self.sources = {kind: slot.source for kind, slot in slots.items()}

    def _get(self, kind: str):
        return self._slots[kind].instance()

    @property
    def llm(self):
        return self._get("llm")

    @property
    def embeddings(self):
        return self._get("embeddings")

    @property
    def vector_store(self):
        return self._get("vector_store")

    @property
    def graph(self):
        return self._get("graph")

    @property
    def conversations(self):
        return self._get("conversations")

    def backend(self, kind: str):
        return self._get(kind)

    def fingerprint(self, kind: str) -> str:
        """The component's settings fingerprint: the key of its cached backend, breaker and thread share."""
        return self._slots[kind].fingerprint

    def describe(self) -> dict[str, dict]:
        """For the UI: {kind: {"label", "source": "custom"|"default", "location": non-secret summary}}."""
        return {kind: {"label": label(kind), "source": slot.source, "location": slot.location()}
                for kind, slot in self._slots.items()}

    def __repr__(self) -> str:
        return f"<Stack {self.sources}>"


def location_summary(kind: str, settings: dict, backend: str = "") -> str:
    """Where a component lives, without anything secret: an endpoint's host and path, or host:port/db."""
    if backend and kind in KINDS and backend == KINDS[kind].local_backend:
        return f"in-process {settings.get('model') or 'MiniLM'} ({settings.get('dimensions', 384)} dims)"
    endpoint = settings.get("endpoint")
    if endpoint:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    host = settings.get("host") or ""
    if not host:
        return ""
    where = f"[{host}]" if ":" in host else host
    if settings.get("port"):
        where += f":{settings['port']}"
    if settings.get("database"):
        where += f"/{settings['database']}"
    return where


def default_settings(kind: str) -> dict:
    """The platform's default component settings for `kind` (trusted: no egress guard), as the registry's
    Kind.defaults function gives them."""
    return import_string(KINDS[kind].defaults)()


def default_slot(kind: str) -> Slot:
    """WizChat's default component of `kind`."""
    spec, settings = KINDS[kind], default_settings(kind)
    backend = spec.local_backend if spec.local_backend and not settings.get("endpoint") else spec.backend
    return Slot(kind, "default", backend, settings, owner=f"default:{kind}",
                fingerprint=fingerprint(["default", kind, backend, settings]))


def component_slot(component) -> Slot:
    """A saved custom component (enabled or not)."""
    fingerprint = component.fingerprint or component.compute_fingerprint()
    return Slot(component.kind, "custom", KINDS[component.kind].backend, component.settings_dict(),
                owner=component.pk, fingerprint=fingerprint)


def custom_components(chatbot) -> dict:
    """{kind: component} the chatbot is set to use; raises ByoiUnavailable when its plan forbids BYOI."""
    if not chatbot.byoi_enabled:
        return {}
    components = {c.kind: c for c in chatbot.components.filter(enabled=True)}
    if components and not chatbot.account.plan.byoi_allowed:
        plan = chatbot.account.plan.name
        raise ByoiUnavailable(f"BYOI is paused: the {plan} plan does not include BYOI. "
                              "Upgrade or disable BYOI for this chatbot.")
    return components


def resolve_defaults() -> Stack:
    """WizChat's own default components, whatever a chatbot is set to use."""
    return Stack({kind: default_slot(kind) for kind in KIND_ORDER})


def resolve(chatbot) -> Stack:
    """The chatbot's stack: enabled custom components where BYOI is on, the platform defaults elsewhere."""
    components = custom_components(chatbot)
    slots = {}
    for kind in KIND_ORDER:
        component = components.get(kind)
        if component is None:
            slots[kind] = default_slot(kind)
            continue
        slots[kind] = component_slot(component)
    return Stack(slots)


def resolve_from_env(environ) -> Stack:
    """A stack from CUSTOM_* variables alone (deployed runtime); kinds without variables use the defaults.

    Reads nothing from the platform database."""
    custom = env_to_settings(environ)
    slots = {}
    for kind in KIND_ORDER:
        if kind not in custom:
            slots[kind] = default_slot(kind)
            continue
        backend = KINDS[kind].backend
        slots[kind] = Slot(kind, "custom", backend, custom[kind], owner=f"env:{kind}",
                           fingerprint=fingerprint(["env", kind, backend, custom[kind]]))
    return Stack(slots)

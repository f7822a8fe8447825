"""One deployed chatbot: its configuration, its components (resolve_from_env: CUSTOM_* only for the customer's
own) and how the chat pipeline runs here without the platform database (chatbots.chat.ChatHost)."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from byoi.access import ComponentFailed, component, provision_once
from byoi.resolver import ByoiUnavailable, resolve_from_env
from chatbots.chat import ChatHost, Knowledge

from .config import RuntimeConfig, config_load
from .outbox import RuntimeOutbox
from .usage import RuntimeUsage

log = logging.getLogger("wizchat.runtime")


@dataclass(frozen=True)
class RuntimeChatbot:
    """What the chat pipeline reads of a chatbot, from WIZCHAT_CHATBOT_* (no platform row)."""

    id: object
    name: str
    slug: str
    instructions: str = ""
    account = None


class RuntimeHost(ChatHost):
    """The chat pipeline in a runtime: the stack from the environment; the plan's monthly quota counted in the
    state folder and reported to the platform (runtime.usage); conversations through the chatbot's backend, with
    a local outbox."""

    def __init__(self, config: RuntimeConfig, environ):
        self.config = config
        self.chatbot = RuntimeChatbot(config.chatbot_id, config.name, config.slug, config.instructions)
        self._stack = resolve_from_env(environ)
        self._custom = any(name.startswith("CUSTOM_") for name in environ)
        folder = Path(settings.RUNTIME_STATE_DIR)
        self.outbox = RuntimeOutbox(folder, config.values.get("WIZCHAT_OUTBOX_KEY"), self._deliver)
        self.usage = RuntimeUsage(folder, config.chatbot_id, config.values.get("WIZCHAT_PLATFORM_URL", ""),
                                  config.values.get("WIZCHAT_PLATFORM_TOKEN", ""),
                                  config.values.get("WIZCHAT_USAGE_REPORT_SECONDS", 5.0))
        seed = [config.values.get(f"WIZCHAT_QUOTA_{name}") for name in ("MONTH", "USED", "LIMIT", "AT")]
        if None not in seed:
            month, used, limit, at = seed
            self.usage.seed(month, used, limit, config.values.get("WIZCHAT_QUOTA_PLAN", ""), at)
        self._failures: dict[tuple, float] = {}

    def _deliver(self, message) -> None:
        provision_once(self._stack, "conversations", self.chatbot.id)
        with component(self._stack, "conversations") as store:
            store.append(self.chatbot.id, message)

    # --- ChatHost ---------------------------------------------------------------------------------------------

    @property
    def configured_stack(self):
        """The components the environment names, whatever the plan says now (where they are, warming)."""
        return self._stack

    def stack(self, chatbot):
        """The stack from the environment — refused, as on the platform, while the platform says the plan lost
        BYOI and this runtime runs the customer's own components (never WizChat's defaults instead)."""
        if self._custom:
            plan = self.usage.byoi_paused()
            if plan is not None:
                raise ComponentFailed("byoi", "your BYOI settings", ByoiUnavailable(
                    f"BYOI is paused: the {plan} plan does not include BYOI. Upgrade or disable BYOI for this "
                    "chatbot and redeploy it."))
        return self._stack

    def knowledge(self, chatbot, with_outbox: bool = False) -> Knowledge:
        # No document table here: search the stores (a chatbot with nothing ingested gets no hits) and take the
        # titles the chunks were stored with.
        return Knowledge(has_chunks=True, has_graph=True, queued=self.outbox.pending if with_outbox else None,
                         titles={})

    def quota_use(self, chatbot) -> None:
        self.usage.use()

    def failure_record(self, chatbot, failure: ComponentFailed, during: str) -> None:
        key = (failure.kind, failure.code, during)
        now = time.monotonic()
        if now - self._failures.get(key, 0) > 60:  # one line a minute per failure, not one per question
            self._failures[key] = now
            log.warning("%s failed while %s: %s", failure.label, during, failure.code)

    def store_end(self, chatbot, pending, first, *rest, stack) -> str:
        if self.outbox.pending:
            self.outbox.flush()  # older messages first
        outcome = "stored"
        for message in (first, *rest):
            if self.outbox.pending:
                self.outbox.put(message)
                outcome = "queued"
                continue
            try:
                self._deliver(message)
            except ComponentFailed as failure:
                self.failure_record(chatbot, failure, "saving messages")
                self.outbox.put(message)
                outcome = "queued"
        return outcome

    def history(self, chatbot, conversation_id: str, stack, limit: int):
        with component(stack, "conversations") as store:
            return store.history(chatbot.id, conversation_id, limit=limit)


_host: RuntimeHost | None = None
_host_lock = threading.Lock()


def runtime_host() -> RuntimeHost:
    """The process's runtime (built once: the environment does not change while it runs)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = RuntimeHost(config_load(os.environ), os.environ)
            _host.outbox.start()
            _host.usage.start()
        return _host

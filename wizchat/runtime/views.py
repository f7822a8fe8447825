"""Liveness and readiness of a deployed runtime.

/healthz: the process answers. /readyz: each of the chatbot's five components answered a light request just now
(cached for a few seconds, so probes do not load the customer's servers), with the Test Connection taxonomy's
code for any that did not. Ready (200) though "degraded" when only the conversations database fails: the
runtime answers and keeps the exchanges in its outbox until it is back. A "not ready" answer is kept for a second only: a failed component's circuit breaker
already spares its server (it is refused at once until its cool-down passes), and the supervisor switches to a
waiting runtime as soon as the component answers again. A probe takes the component's timeouts at most. Where a
component runs (the customer's host) is shown only to the platform (X-WizChat-Platform-Token); never a secret."""

from __future__ import annotations

import hmac
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from byoi.access import ComponentFailed, component

from .host import runtime_host

# A runtime can serve without these: the exchanges wait in its outbox and are stored once the component answers
# (runtime.outbox), so a failing conversations database makes it "ready" but degraded, never holds a deploy back.
QUEUEABLE = {"conversations"}
READY_CACHE_SECONDS = 5.0
NOT_READY_CACHE_SECONDS = 1.0
_PROBES = {
    "llm": lambda backend, chatbot_id: backend.models(),
    "embeddings": lambda backend, chatbot_id: backend.models() if hasattr(backend, "models") else None,
    "vector_store": lambda backend, chatbot_id: backend.dimensions(chatbot_id),
    "graph": lambda backend, chatbot_id: backend.client.ping(),
    "conversations": lambda backend, chatbot_id: backend.history(chatbot_id, "readyz", limit=1),
}
_pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="wizchat-readyz")
_cache: dict = {"at": 0.0, "result": None}
_cache_lock = threading.Lock()


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _probe(host, kind: str) -> dict:
    started = time.monotonic()
    try:
        with component(host.stack(host.chatbot), kind) as backend:  # refused while the plan lacks BYOI
            _PROBES[kind](backend, host.chatbot.id)
    except ComponentFailed as failure:
        return {"ok": False, "code": failure.code, "hint": failure.hint}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def readiness() -> dict:
    host = runtime_host()
    with _cache_lock:
        cached = _cache["result"]
        if cached is not None and time.monotonic() - _cache["at"] < (
                READY_CACHE_SECONDS if cached["status"] == "ready" and not cached["degraded"]
                else NOT_READY_CACHE_SECONDS):
            return cached
        stack = host.configured_stack
        futures = {kind: _pool.submit(_probe, host, kind) for kind in _PROBES}
        wait(futures.values())
        components = {kind: {"source": stack.sources[kind], **future.result()} for kind, future in futures.items()}
        failing = [kind for kind, c in components.items() if not c["ok"]]
        result = {"status": "ready" if set(failing) <= QUEUEABLE else "not ready",
                  "chatbot": host.chatbot.slug, "components": components, "degraded": failing,
                  "outbox": host.outbox.count()}
        _cache.update(at=time.monotonic(), result=result)
        return result


@require_GET
def readyz(request):
    result = readiness()
    host = runtime_host()
    token = host.config.values.get("WIZCHAT_PLATFORM_TOKEN", "")
    presented = request.headers.get("X-WizChat-Platform-Token", "")
    body = {**result, "components": {k: dict(v) for k, v in result["components"].items()}}
    if token and presented and hmac.compare_digest(token, presented):
        described = host.configured_stack.describe()
        for kind, entry in body["components"].items():
            entry["location"] = described[kind]["location"]
    return JsonResponse(body, status=200 if result["status"] == "ready" else 503)

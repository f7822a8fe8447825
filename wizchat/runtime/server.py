"""The runtime's HTTP server: gunicorn, one worker process with threads (gthread).

Why gunicorn with threads: the chat pipeline and the public API are synchronous Django code that streams answers
(StreamingHttpResponse over server-sent events); each stream holds a thread while the LLM talks, and the worker's
main loop keeps accepting meanwhile, so streams do not block other requests. One process keeps the runtime's
counters (rate limits) and its outbox exact without a shared store. SIGTERM stops it gracefully: requests in
flight — streams included — finish (up to the graceful timeout) before it exits, which is what a redeploy
relies on."""

from __future__ import annotations

import logging
import threading

from gunicorn.app.base import BaseApplication

log = logging.getLogger("wizchat.runtime")


class _Server(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .wsgi import application

        return application


def _worker_ready(worker) -> None:
    """In the worker (threads do not survive gunicorn's fork): build the chatbot's components, start the outbox's
    delivery thread, check the components in the background (the first /readyz — the supervisor's, before it
    switches to this runtime — finds the check under way instead of starting it: a silent component is named
    a timeout after the start, not after the first question), report the outcome to the platform as soon as it
    is known (runtime.readiness_report: a Kubernetes pod cannot be asked) and warm the in-process embedder, so
    the first question does not pay for it."""
    from .host import runtime_host
    from .readiness_report import ReadinessReporter
    from .views import readiness

    host = runtime_host()
    stack = host.configured_stack
    threading.Thread(target=readiness, name="wizchat-readyz-first", daemon=True).start()
    values = host.config.values
    if values.get("WIZCHAT_DEPLOY_GENERATION"):  # a runtime started by hand has no deploy to report for
        ReadinessReporter(values.get("WIZCHAT_PLATFORM_URL", ""), values.get("WIZCHAT_PLATFORM_TOKEN", ""),
                          host.chatbot.id, host.usage.instance, values["WIZCHAT_DEPLOY_GENERATION"], readiness,
                          values.get("WIZCHAT_USAGE_REPORT_SECONDS", 5.0)).start()
    if stack.sources.get("embeddings") == "default":
        try:
            stack.embeddings.embed(["warm up"])
        except Exception:  # noqa: BLE001 - reported by /readyz and by the first question
            log.warning("The embeddings component could not be warmed up")
    log.info("Chatbot %s is served (components: %s)", host.chatbot.slug,
             ", ".join(f"{k}={v}" for k, v in stack.sources.items()))


def _worker_exit(server, worker) -> None:
    """A last usage report on the way out (bounded): a Kubernetes pod's state folder goes with the pod."""
    from .host import runtime_host

    try:
        runtime_host().usage.report(timeout=3)
    except Exception:  # noqa: BLE001 - the counts stay in the state folder for the next runtime
        log.warning("The last usage report failed")


def serve(config) -> int:
    values = config.values
    options = {
        "bind": f"{values.get('WIZCHAT_RUNTIME_HOST', '0.0.0.0')}:{values.get('WIZCHAT_RUNTIME_PORT', 8080)}",  # noqa: S104
        "workers": 1,
        "worker_class": "gthread",
        "threads": values.get("WIZCHAT_RUNTIME_THREADS", 32),
        "timeout": 120,
        "graceful_timeout": 60,
        "keepalive": 5,
        "accesslog": None,  # the request-log middleware writes one line per request, without query strings
        "errorlog": "-",
        "loglevel": "warning",
        "post_worker_init": _worker_ready,
        "worker_exit": _worker_exit,
        "proc_name": f"wizchat-runtime-{config.slug}",
        "control_socket_disable": True,  # gunicorn's control socket would live in $HOME, shared by every runtime
    }
    _Server(options).run()
    return 0

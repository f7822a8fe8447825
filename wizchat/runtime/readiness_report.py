"""A runtime tells the platform whether it is ready, and which component it waits for.

The local supervisor asks each runtime's /readyz itself; a Kubernetes pod cannot be reached from the platform, and
a pod that is not Ready gets no traffic from its Service either. So every runtime pushes a summary of its readiness
to `WIZCHAT_PLATFORM_URL` + /internal/runtimes/readiness (chatbots.runtime_readiness), with the deployment's
platform token as its usage reports do: once its first check is done (a few seconds after the start, whether or
not the pod is Ready), every WIZCHAT_USAGE_REPORT_SECONDS while it is not ready, and every READY_REPORT_SECONDS
once it is (the platform believes a report for a minute).

The summary holds, per component, ok and the taxonomy's code — plus the hint, which the platform replaces with its
own — the runtime's status, its deploy generation (WIZCHAT_DEPLOY_GENERATION) and an instance id: its state
folder's (one per pod), never its host name. No host, no message, no secret: those stay in /readyz, for the
platform's token only."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .usage import ReportFailed, platform_post

log = logging.getLogger(__name__)
PATH = "/internal/runtimes/readiness"
READY_REPORT_SECONDS = 20.0


def readiness_summary(result: dict) -> dict:
    """What of readiness() goes to the platform: the status and, per component, ok, code and hint."""
    return {"status": result["status"],
            "components": {kind: {"ok": bool(entry.get("ok")), "code": entry.get("code"), "hint": entry.get("hint")}
                           for kind, entry in result["components"].items()}}


class ReadinessReporter:
    def __init__(self, platform_url: str, token: str, chatbot_id, instance: str, generation: int,
                 check: Callable[[], dict], interval: float = 5.0):
        self.url = f"{platform_url.rstrip('/')}{PATH}" if platform_url else ""
        self._token = token
        self.identity = {"chatbot": str(chatbot_id), "instance": str(instance), "generation": generation}
        self._check = check
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None

    def report(self, timeout: float = 5.0) -> dict | None:
        """Check readiness (readiness() caches it) and send the summary; the summary sent, None when it did not
        reach the platform."""
        summary = {**self.identity, **readiness_summary(self._check())}
        try:
            platform_post(self.url, self._token, summary, timeout)
        except ReportFailed as failure:
            if self._failing != str(failure):
                log.warning("Readiness report failed: %s", failure)
                self._failing = str(failure)
            return None
        self._failing = None
        return summary

    def start(self) -> None:
        if self._thread is not None or not self.url:
            return

        def loop():
            while not self._stop.is_set():
                sent = None
                try:
                    sent = self.report(timeout=min(5.0, max(2.0, self.interval)))
                except Exception:  # noqa: BLE001 - the reporter must outlive any surprise
                    log.exception("Readiness report failed")
                ready = sent is not None and sent["status"] == "ready"
                self._stop.wait(max(self.interval, READY_REPORT_SECONDS) if ready else self.interval)

        self._thread = threading.Thread(target=loop, name="wizchat-readiness-report", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

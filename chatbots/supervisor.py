"""The local deployment target: one supervised runtime process per deployed chatbot, run by `make run`
(`manage.py deployments_supervise`).

Each deployment keeps one stable address (its `port`), held by a small TCP relay in this process; behind it runs
the current runtime (`python -m wizchat.runtime`) on a private port. Deploying again starts the new runtime beside
the old one, waits for its /readyz, points the relay at it, and only then stops the old one with SIGTERM, which
lets its requests in flight — streams included — finish: no request is dropped. A runtime that dies is started
again.

While a new runtime's components fail, its /readyz names them with the taxonomy's code: the deployment says so at
once ("Waiting for Vector Store: refused …"), stays starting while the previous runtime keeps serving, and switches
as soon as they answer (or fails after READY_TIMEOUT, until someone deploys again). /readyz is asked from a thread
of its own: a silent component makes it take the component's timeouts, which must not hold up the other
deployments. The runtime's secrets reach it only through its process environment: never its command line, never a
file.

Every runtime starts with the environment its deployment was deployed with (its encrypted snapshot,
deployments.deployment_runtime_env), never the chatbot's current settings: a runtime restarted after a crash, or
by the next `make run`, runs what was deployed, and settings saved since wait for a redeploy (the page says "out
of date" meanwhile). A snapshot that cannot be decrypted fails the deployment ("redeploy"), once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connections

from wizchat import embedded

from .deployments import (
    PREVIOUS_SERVES,
    DeployRefused,
    components_failing,
    deployment_mark,
    deployment_runtime_env,
)
from .models import Deployment

log = logging.getLogger("wizchat.deployments")
READY_TIMEOUT = 90.0
BASE = Path(__file__).resolve().parent.parent
# What a runtime inherits from the supervisor's environment: how to run Python, nothing of the platform's.
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")


@dataclass
class Runtime:
    generation: int
    port: int
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    log_path: Path | None = None


@dataclass
class Entry:
    deployment_id: object
    port: int
    backend: int | None = None  # the private port the relay forwards to
    current: Runtime | None = None
    pending: Runtime | None = None
    server: asyncio.AbstractServer | None = None
    restarts: int = 0
    failed_generation: int | None = None  # held back until someone deploys again
    check: tuple[Runtime, Future] | None = None  # the pending runtime's /readyz being asked


class Relay:
    """TCP relays on an asyncio loop of their own thread: stable port → the current runtime's private port."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="wizchat-relay", daemon=True)
        self.thread.start()

    def open(self, entry: Entry, host: str) -> None:
        async def handle(reader, writer):
            port = entry.backend
            if port is None:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nRetry-After: 2\r\n\r\n"
                             b'{"error":{"message":"The chatbot is starting.","type":"server_error",'
                             b'"code":"starting"}}')
                await _answered(reader, writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        async def start():
            entry.server = await asyncio.start_server(handle, host, entry.port, reuse_address=True)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self, entry: Entry) -> None:
        if entry.server is not None:
            server = entry.server

            async def stop():
                server.close()

            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
            entry.server = None


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close a connection answered without reading its request: our side first, then the client's request is
    read to its end (a socket closed with unread bytes resets the connection, and the client loses the answer)."""
    try:
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(2):
            while await reader.read(65536):
                pass
    except (ConnectionError, OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _ready_timeout() -> float:
    """How long /readyz may take: its probes wait for a silent component's timeouts (runtime.views)."""
    return settings.BYOI_CONNECT_TIMEOUT + settings.BYOI_OPERATION_TIMEOUT + 2


def _ready(port: int, timeout: float = 2) -> tuple[bool, str]:
    """(ready, why) from the runtime's /readyz: why names each failing component with its code and hint — the
    ones it waits for, or, ready but degraded (the conversations database), the ones it serves without."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as response:  # noqa: S310
            try:
                failing = components_failing(json.loads(response.read() or b"{}"))
            except ValueError:
                failing = ""
            return True, (f"Started while {failing}. It answers, and keeps the exchanges until the conversations "
                          "database takes them." if failing else "")
    except urllib.error.HTTPError as error:
        try:
            failing = components_failing(json.loads(error.read() or b"{}"))
        except ValueError:
            return False, f"Not ready ({error.code})."
        return False, f"Waiting for {failing}" if failing else f"Not ready ({error.code})."
    except OSError:
        return False, "The runtime is not answering yet."


class Supervisor:
    def __init__(self, state_dir: Path | None = None, poll: float = 0.5):
        self.state_dir = state_dir or Path(settings.STATE_DIR) / "deployments"
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.poll = poll
        self.entries: dict = {}
        self.relay = Relay()
        self._checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wizchat-readyz")
        self._stop = threading.Event()
        self._wake = threading.Event()  # a /readyz answer arrived: reconcile now rather than at the next poll

    # --- processes ---------------------------------------------------------------------------------------------

    def _spawn(self, deployment: Deployment) -> Runtime:
        """Start a runtime of the deployment's latest deploy; DeployRefused when its environment is unreadable."""
        generation, deployed = deployment_runtime_env(deployment)
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.update(deployed)
        deployed.clear()
        port = embedded.free_port()
        folder = self.state_dir / str(deployment.chatbot_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        env.update(WIZCHAT_RUNTIME_HOST="127.0.0.1", WIZCHAT_RUNTIME_PORT=str(port),
                   WIZCHAT_RUNTIME_STATE_DIR=str(folder / "state"), HOME=str(folder))
        log_path = folder / "runtime.log"
        with open(log_path, "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "wizchat.runtime"], env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=str(BASE))
        # The environment was the only copy of the secrets outside the platform database: drop ours.
        env.clear()
        return Runtime(generation, port, process, log_path=log_path)

    def _start(self, entry: Entry, deployment: Deployment) -> bool:
        """Spawn the pending runtime; on a refusal (its environment cannot be read) fail this generation once."""
        try:
            entry.pending = self._spawn(deployment)
        except DeployRefused as refused:
            entry.failed_generation = deployment.generation
            serving = PREVIOUS_SERVES if entry.current else ""
            deployment_mark(deployment, Deployment.Status.FAILED, f"{refused}{serving}")
            return False
        return True

    def _retire(self, runtime: Runtime | None) -> None:
        """Stop a runtime gracefully in the background (it finishes what it is serving)."""
        if runtime is not None:
            threading.Thread(target=embedded.stop_process, args=(runtime.process, 70), daemon=True).start()

    @staticmethod
    def _last_words(runtime: Runtime) -> str:
        try:
            lines = [line for line in runtime.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return " ".join(lines[-3:])[-600:]

    # --- reconciling -----------------------------------------------------------------------------------------

    def step(self) -> None:
        close_old_connections()
        wanted = {d.id: d for d in Deployment.objects.select_related("chatbot__account__plan")
                  .filter(target=Deployment.Target.LOCAL).exclude(status=Deployment.Status.STOPPED)}
        for deployment_id in list(self.entries):
            if deployment_id not in wanted:
                self._drop(deployment_id)
        for deployment in wanted.values():
            try:
                self._reconcile(deployment)
            except DeployRefused as refused:
                deployment_mark(deployment, Deployment.Status.FAILED, str(refused))
            except Exception:  # noqa: BLE001 - one deployment's trouble must not stop the others
                log.exception("Deployment of chatbot %s could not be reconciled", deployment.chatbot_id)

    def _drop(self, deployment_id) -> None:
        entry = self.entries.pop(deployment_id)
        self.relay.close(entry)
        for runtime in (entry.pending, entry.current):
            if runtime is not None:
                embedded.stop_process(runtime.process, 70)

    def _reconcile(self, deployment: Deployment) -> None:
        entry = self.entries.get(deployment.id)
        if entry is None or entry.port != deployment.port:
            if entry is not None:
                self._drop(deployment.id)
            entry = Entry(deployment.id, deployment.port)
            self.relay.open(entry, settings.DEPLOY_LOCAL_HOST)
            self.entries[deployment.id] = entry
        current, pending = entry.current, entry.pending
        if current is not None and current.process.poll() is not None and pending is None:
            log.warning("The runtime of chatbot %s exited (%s); starting it again", deployment.chatbot_id,
                        current.process.returncode)
            entry.current, entry.backend = None, None
            entry.restarts += 1
            if self._start(entry, deployment):
                deployment_mark(deployment, Deployment.Status.STARTING, "Starting again: the runtime had exited.")
            return
        if pending is None:
            behind = current is None or current.generation != deployment.generation
            if behind and entry.failed_generation != deployment.generation:
                if self._start(entry, deployment) and deployment.status != Deployment.Status.STARTING:
                    deployment_mark(deployment, Deployment.Status.STARTING)
            elif not behind and deployment.status != Deployment.Status.RUNNING:
                deployment_mark(deployment, Deployment.Status.RUNNING)
            return
        if pending.process.poll() is not None:
            entry.pending, entry.failed_generation = None, pending.generation
            serving = PREVIOUS_SERVES if entry.current else ""
            deployment_mark(deployment, Deployment.Status.FAILED,
                            f"The runtime exited at start (status {pending.process.returncode}): "
                            f"{self._last_words(pending)}{serving}".strip())
            return
        if entry.check is None or entry.check[0] is not pending:
            entry.check = (pending, self._checks.submit(_ready, pending.port, _ready_timeout()))
            entry.check[1].add_done_callback(lambda _: self._wake.set())
        if not entry.check[1].done():
            return
        ready, why = entry.check[1].result()
        entry.check = None
        serving = PREVIOUS_SERVES if entry.current else ""
        if ready:
            old, entry.current, entry.pending = entry.current, pending, None
            entry.backend = pending.port
            self._retire(old)
            deployment_mark(deployment, Deployment.Status.RUNNING, why, running_generation=pending.generation)
            log.info("Chatbot %s: runtime generation %s serves on %s", deployment.chatbot_id, pending.generation,
                     deployment.url)
        elif time.monotonic() - pending.started > READY_TIMEOUT:
            entry.pending, entry.failed_generation = None, pending.generation
            self._retire(pending)
            deployment_mark(deployment, Deployment.Status.FAILED, f"It never became ready. {why}{serving}")
        elif why.startswith("Waiting for") and deployment.reason != why + serving:
            deployment_mark(deployment, Deployment.Status.STARTING, why + serving)

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
                self._wake.wait(self.poll)
                self._wake.clear()
        finally:
            self.shutdown()
            connections.close_all()  # this thread's own database connection

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def shutdown(self) -> None:
        for deployment_id in list(self.entries):
            self._drop(deployment_id)
        self._checks.shutdown(wait=False, cancel_futures=True)


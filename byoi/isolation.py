"""Tenant isolation in one process: a circuit breaker per component, and background threads that no single
component can fill.

Both are keyed by the component's settings fingerprint (byoi.fingerprint), so every chatbot that uses the same
database or endpoint shares one breaker and one share of threads, and changed settings start afresh. Both live
in process memory and are thread-safe; a forked child (a Celery worker process) starts with empty ones.

- `Breaker`: after a transient failure (BackendError.transient) a component is *open*: calls fail at once with
  the same code, saying when it failed and when it will be tried again, instead of each waiting for the
  timeout. After a cool-down (doubling up to a maximum while it keeps failing) one caller is let through as
  the *probe*; its success closes the breaker, its failure opens it again. A failure that is not transient
  (a wrong password, a missing table) proves the component answers: it closes the breaker.
- `Lanes`: a thread pool where each component may hold only a few threads and a submission never queues:
  when the component's share (or the whole pool) is busy, `submit` returns None and the caller does the work
  in its own thread. A stalled customer database can thus hold at most its own share of the threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .errors import BackendError


def _seconds(value: float) -> str:
    if value < 1:
        return "under a second"
    return f"{value:.0f} s"


class CircuitOpen(Exception):
    """The component failed recently and its cool-down has not passed: `error` is the refusal to report."""

    def __init__(self, error: BackendError, retry_in: float):
        super().__init__(error.message)
        self.error = error
        self.retry_in = retry_in


@dataclass
class _State:
    failures: int = 0  # consecutive transient failures
    error: BackendError | None = None  # the last one
    failed_at: float = 0.0
    cooldown: float = 0.0  # current cool-down; 0 while closed
    retry_at: float = 0.0  # when the next probe may go
    probe_until: float = 0.0  # a probe is in flight until then (a lost probe frees the slot after it)


@dataclass
class Admission:
    """A caller allowed through; `probe` when it is the one call testing an open component."""

    key: str | None
    probe: bool = False


class Breaker:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def admit(self, key: str | None, probe_timeout: float) -> Admission:
        """Let a call through, or raise CircuitOpen. `probe_timeout`: how long a probe may take before another
        caller may probe instead (its caller may have died without reporting)."""
        if not key:
            return Admission(None)
        now = self._clock()
        with self._lock:
            state = self._states.get(key)
            if state is None or not state.cooldown:
                return Admission(key)
            if now >= state.retry_at and now >= state.probe_until:
                state.probe_until = now + probe_timeout
                return Admission(key, probe=True)
            error = state.error
            ago, retry_in = now - state.failed_at, max(state.retry_at, state.probe_until) - now
        message = (f"{error.message.rstrip('.')}. It failed {_seconds(ago)} ago: WizChat does not wait for it again "
                   f"until it is retried in {_seconds(retry_in)}.")
        raise CircuitOpen(BackendError(error.code, message, error.hint), retry_in)

    def succeeded(self, admission: Admission) -> None:
        if admission.key:
            with self._lock:
                self._states.pop(admission.key, None)

    def failed(self, admission: Admission, error: BackendError, *, cooldown: float, max_cooldown: float,
               threshold: int = 1) -> float | None:
        """Record a failed call; the seconds until the next probe when the breaker is (now) open, else None."""
        if not admission.key:
            return None
        if not error.transient:
            self.succeeded(admission)  # it answered: reachable
            return None
        now = self._clock()
        with self._lock:
            state = self._states.setdefault(admission.key, _State())
            state.failures += 1
            # A copy without the exception's chain: its traceback would keep the failed connection (and its
            # socket) alive for as long as the breaker remembers the failure.
            state.error, state.failed_at = BackendError(error.code, error.message, error.hint), now
            if admission.probe:
                state.probe_until = 0.0
            if not (state.cooldown or state.failures >= threshold):
                return None
            if admission.probe or not state.cooldown:
                state.cooldown = min(max_cooldown, state.cooldown * 2) if state.cooldown else cooldown
                state.retry_at = now + state.cooldown
            return max(0.0, state.retry_at - now)

    def released(self, admission: Admission) -> None:
        """The call ended without saying anything about the component (abandoned, or WizChat's own error)."""
        if admission.key and admission.probe:
            with self._lock:
                state = self._states.get(admission.key)
                if state is not None:
                    state.probe_until = 0.0

    def retry_in(self, key: str | None) -> float | None:
        """Seconds until an open component is tried again; None when it is closed."""
        if not key:
            return None
        with self._lock:
            state = self._states.get(key)
            if state is None or not state.cooldown:
                return None
            return max(0.0, state.retry_at - self._clock())

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


class Lanes:
    """A shared thread pool with a cap per key; `submit` never queues (None: do it yourself)."""

    def __init__(self, name: str, max_workers: int):
        self.name, self.max_workers = name, max_workers
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._total = 0
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, key: str | None, limit: int, fn: Callable, *args) -> Future | None:
        """Run fn(*args) on a pool thread if `key` holds fewer than `limit` of them and one is free; else None."""
        key = key or "?"
        with self._lock:
            if self._total >= self.max_workers or self._busy.get(key, 0) >= limit:
                return None
            self._busy[key] = self._busy.get(key, 0) + 1
            self._total += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix=self.name)
            executor = self._executor
        try:
            future = executor.submit(fn, *args)
        except BaseException:
            self._done(key)
            raise
        future.add_done_callback(lambda _: self._done(key))
        return future

    def _done(self, key: str) -> None:
        with self._lock:
            left = self._busy.get(key, 0) - 1
            if left > 0:
                self._busy[key] = left
            else:
                self._busy.pop(key, None)
            self._total = max(0, self._total - 1)

    def busy(self, key: str | None = None) -> int:
        with self._lock:
            return self._total if key is None else self._busy.get(key or "?", 0)


BREAKER = Breaker()

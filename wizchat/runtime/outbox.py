"""The runtime's outbox: messages its conversations database could not take when they were written.

The platform keeps its outbox in the platform database and delivers it with Celery; a runtime has neither, so it
keeps the same promise with a SQLite file in its state folder (encrypted with WIZCHAT_OUTBOX_KEY, which the
platform derives per chatbot so that a restarted runtime reads what its predecessor queued) and a delivery
thread. Order is kept (a conversation never gets a later message before an earlier one) and the message id makes
a second delivery a no-op, as on the platform."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from byoi.backends.base import Message

log = logging.getLogger(__name__)


class RuntimeOutbox:
    def __init__(self, folder: Path, key: str | None, deliver):
        """`deliver(message)` stores one message in the conversations database or raises."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path = folder / "outbox.sqlite3"
        if not key:
            log.warning("WIZCHAT_OUTBOX_KEY is not set: messages queued now cannot be read after a restart.")
            key = Fernet.generate_key().decode()
        self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        self._deliver = deliver
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "message_id TEXT UNIQUE NOT NULL, payload BLOB NOT NULL, attempts INTEGER DEFAULT 0)")
        self._pending = self.count() > 0
        self._thread: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    @property
    def pending(self) -> bool:
        """Whether messages wait (kept in memory: asked on every question)."""
        return self._pending

    def put(self, message: Message) -> None:
        payload = self._fernet.encrypt(json.dumps(asdict(message)).encode())
        with self._lock, self._connect() as db:
            db.execute("INSERT OR IGNORE INTO outbox (message_id, payload) VALUES (?, ?)", (message.id, payload))
            self._pending = True
        self._wake.set()

    def flush(self) -> int:
        """Deliver in order; stop at the first failure. Returns how many were delivered."""
        delivered = 0
        with self._lock:
            with self._connect() as db:
                rows = db.execute("SELECT seq, payload FROM outbox ORDER BY seq").fetchall()
            for seq, payload in rows:
                try:
                    message = Message(**json.loads(self._fernet.decrypt(payload)))
                except (InvalidToken, ValueError, TypeError):
                    log.error("Outbox message %s cannot be read with this WIZCHAT_OUTBOX_KEY; kept aside", seq)
                    with self._connect() as db:
                        db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
                    continue
                try:
                    self._deliver(message)
                except Exception as error:  # noqa: BLE001 - classified by the caller's component(); kept for later
                    with self._connect() as db:
                        db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
                    log.warning("Conversations database still unavailable (%s); %d message(s) wait",
                                getattr(error, "code", type(error).__name__), len(rows) - delivered)
                    break
                with self._connect() as db:
                    db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                delivered += 1
            self._pending = self.count() > 0
        if delivered:
            log.info("Delivered %d queued message(s) to the conversations database", delivered)
        return delivered

    def start(self) -> None:
        """Deliver in the background: at once when a message is queued, then with backoff (2 s … 60 s)."""
        if self._thread is not None:
            return

        def loop():
            wait = 2.0
            while not self._stop.is_set():
                self._wake.wait(wait)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if not self._pending:
                    wait = 2.0
                    continue
                before = self.count()
                self.flush()
                wait = 2.0 if self.count() < before else min(60.0, wait * 2)

        self._thread = threading.Thread(target=loop, name="wizchat-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

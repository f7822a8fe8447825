"""The plan's monthly message quota in a deployed runtime, which has no platform database.

Each question is counted in a SQLite file of the state folder (beside the outbox) before it is answered, and a
background thread reports the counts to the platform (`WIZCHAT_PLATFORM_URL` + /internal/runtimes/usage, with
WIZCHAT_PLATFORM_TOKEN) every WIZCHAT_USAGE_REPORT_SECONDS; the answer is the account's count and limit for the
month, kept in the same file. A question is refused with the platform's own "quota" error when the last count
heard plus what this runtime has not had counted yet reaches the limit — never a network call on the way.

Fails open, bounded: while the platform cannot be reached the runtime goes on answering and counting, and stops at
the last limit heard; the counts go once it is back (after a restart too: they are in the file). A runtime that
has never reached the platform knows the count and the limit from its deployment's quota seed (WIZCHAT_QUOTA_*,
read when the chatbot was deployed): the file keeps whichever it heard later, the seed or the platform's last
answer (`as_of`), so a restart with a deploy's old seed does not forget what was heard since, and a seed is
never added to a count (it replaces the count it is newer than; the questions not reported yet add to either). Exactly once:
counts are sealed into numbered batches (`seq`, under an `instance` id of the state folder) that are resent
unchanged until answered; the platform counts a batch number once (chatbots.runtime_usage). Two runtimes sharing
the folder (a redeploy's old and new one, side by side for a while) share the file, its numbering and its counts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from wizchat.plans import PlanLimitReached, message_limit_text

log = logging.getLogger(__name__)
PATH = "/internal/runtimes/usage"
REPORT_TIMEOUT = 10.0


def month_now() -> str:
    now = time.gmtime()
    return f"{now.tm_year:04d}-{now.tm_mon:02d}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a report goes where it was configured to, or nowhere
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class ReportFailed(Exception):
    """`permanent`: the platform refused this batch as malformed (it is dropped, not resent forever)."""

    def __init__(self, message: str, permanent: bool = False):
        self.permanent = permanent
        super().__init__(message)


def platform_post(url: str, token: str, body: dict, timeout: float):
    """POST `body` as JSON to the platform with the deployment's platform token; its JSON answer. ReportFailed
    (permanent for a 400: the platform will never take it) when it refuses or cannot be reached."""
    # S310: the URL is WIZCHAT_PLATFORM_URL, checked to be http(s) by runtime.config.
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={  # noqa: S310
        "Content-Type": "application/json", "X-WizChat-Platform-Token": token})
    try:
        with _opener.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise ReportFailed(f"the platform answered {error.code}", permanent=error.code == 400) from None
    except (OSError, ValueError) as error:
        raise ReportFailed(f"the platform cannot be reached ({type(error).__name__})") from None


class RuntimeUsage:
    def __init__(self, folder: Path, chatbot_id, platform_url: str = "", token: str = "", interval: float = 5.0):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.chatbot_id = str(chatbot_id)
        self.url = f"{platform_url.rstrip('/')}{PATH}" if platform_url else ""
        self._token = token
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None  # what the last failed report said (logged once per streak)
        self._db = sqlite3.connect(folder / "usage.sqlite3", timeout=10, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: survives a crash of the process
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            # Questions answered and not yet sealed into a batch, per month (YYYY-MM).
            db.execute("CREATE TABLE IF NOT EXISTS counted (month TEXT PRIMARY KEY, messages INTEGER NOT NULL)")
            # Sealed batches waiting for the platform's answer; AUTOINCREMENT never reuses a number.
            db.execute("CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "month TEXT NOT NULL, messages INTEGER NOT NULL)")
            # The account's count per month as the platform last said it (this runtime's batches included).
            db.execute("CREATE TABLE IF NOT EXISTS known (month TEXT PRIMARY KEY, used INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('instance', ?)", (str(uuid.uuid4()),))
            self.instance = db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]
            # Read on every question (RuntimeHost.stack): kept in memory, written with the answer that said it.
            self._paused_plan = ((self._meta(db, "plan") or "current") if self._meta(db, "byoi_allowed") == "0"
                                 else None)
        if not self.url:
            log.warning("WIZCHAT_PLATFORM_URL is not set: messages are counted here but never reported, and the "
                        "plan's monthly quota is enforced only as far as the deployment's quota seed goes.")

    # --- storage -----------------------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, owner):
            self.owner = owner

        def __enter__(self):
            self.owner._lock.acquire()
            try:
                self.owner._db.execute("BEGIN IMMEDIATE")  # one writer across processes sharing the file
            except BaseException:
                self.owner._lock.release()
                raise
            return self.owner._db

        def __exit__(self, kind, *rest):
            try:
                self.owner._db.execute("ROLLBACK" if kind else "COMMIT")
            finally:
                self.owner._lock.release()

    def _transaction(self):
        return self._Tx(self)

    @staticmethod
    def _local(db, month: str) -> int:
        """Questions of `month` the platform has not counted yet (as far as this file knows)."""
        return db.execute("SELECT (SELECT coalesce(sum(messages), 0) FROM counted WHERE month = ?) + "
                          "(SELECT coalesce(sum(messages), 0) FROM batches WHERE month = ?)",
                          (month, month)).fetchone()[0]

    @staticmethod
    def _meta(db, key: str):
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # --- the request path ----------------------------------------------------------------------------------------

    def seed(self, month: str, used: int, limit: int, plan: str, at: float) -> bool:
        """Take the deployment's quota seed — the account's count for `month` and the plan's limit as they stood
        at `at` (seconds since the epoch) — unless the file knows of something later. True when taken."""
        with self._transaction() as db:
            as_of = self._meta(db, "as_of")
            if as_of is not None and float(as_of) >= at:
                return False
            db.execute("INSERT INTO known (month, used) VALUES (?, ?) ON CONFLICT (month) DO UPDATE SET used = "
                       "excluded.used", (month, used))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('limit', ?)", (str(limit),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('plan', ?)", (plan[:100],))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('as_of', ?)", (repr(float(at)),))
        return True

    def use(self) -> None:
        """Count one question; PlanLimitReached (the platform's message) when the month's allowance is used up.
        With neither a seed nor an answer from the platform yet (a new state folder), nothing is refused."""
        month = month_now()
        with self._transaction() as db:
            limit = self._meta(db, "limit")
            if limit is not None:
                row = db.execute("SELECT used FROM known WHERE month = ?", (month,)).fetchone()
                if (row[0] if row else 0) + self._local(db, month) >= int(limit):
                    raise PlanLimitReached(message_limit_text(self._meta(db, "plan") or "current", int(limit)))
            db.execute("INSERT INTO counted (month, messages) VALUES (?, 1) "
                       "ON CONFLICT (month) DO UPDATE SET messages = messages + 1", (month,))

    def byoi_paused(self) -> str | None:
        """The plan's name when the platform last said the plan no longer includes BYOI, else None."""
        return self._paused_plan

    def state(self) -> dict:
        """{"month", "used" (as last heard), "unreported", "limit"}: for /readyz and the tests."""
        month = month_now()
        with self._transaction() as db:
            row = db.execute("SELECT used FROM known WHERE month = ?", (month,)).fetchone()
            limit = self._meta(db, "limit")
            return {"month": month, "used": row[0] if row else None, "unreported": self._local(db, month),
                    "limit": int(limit) if limit is not None else None}

    # --- reporting -----------------------------------------------------------------------------------------------

    def _post(self, seq: int | None, month: str, messages: int, timeout: float) -> dict:
        answer = platform_post(self.url, self._token, {"chatbot": self.chatbot_id, "instance": self.instance,
                                                       "seq": seq, "month": month, "messages": messages}, timeout)
        if not (isinstance(answer, dict) and isinstance(answer.get("used"), int)
                and isinstance(answer.get("limit"), int) and answer.get("month") == month):
            raise ReportFailed("the platform's answer is not a usage answer")
        return answer

    def _heard(self, db, answer: dict) -> None:
        db.execute("INSERT INTO known (month, used) VALUES (?, ?) ON CONFLICT (month) DO UPDATE SET used = "
                   "excluded.used", (answer["month"], answer["used"]))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('limit', ?)", (str(answer["limit"]),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('plan', ?)", (str(answer.get("plan") or "")[:100],))
        if isinstance(answer.get("byoi_allowed"), bool):
            db.execute("INSERT OR REPLACE INTO meta VALUES ('byoi_allowed', ?)", ("1" if answer["byoi_allowed"] else "0",))
            self._paused_plan = None if answer["byoi_allowed"] else (str(answer.get("plan") or "")[:100] or "current")
        db.execute("DELETE FROM known WHERE month < ?", (month_now()[:4] + "-00",))  # older years: not needed
        # When this was heard, by this machine's clock (a seed's time is the platform's: the two agree to the
        # second or so, and a seed is minutes or more older than what a runtime hears after it starts).
        db.execute("INSERT OR REPLACE INTO meta VALUES ('as_of', ?)", (repr(time.time()),))

    def report(self, timeout: float = REPORT_TIMEOUT) -> bool:
        """One round: seal what was counted into a batch, send the batches oldest first (each until answered),
        then ask for the month's count if no batch of this month went. True when the platform answered."""
        if not self.url:
            return False
        with self._transaction() as db:
            for month, messages in db.execute("SELECT month, messages FROM counted WHERE messages > 0 "
                                              "ORDER BY month").fetchall():
                db.execute("INSERT INTO batches (month, messages) VALUES (?, ?)", (month, messages))
            db.execute("DELETE FROM counted")
        current, asked = month_now(), False
        try:
            while True:
                with self._transaction() as db:
                    batch = db.execute("SELECT seq, month, messages FROM batches ORDER BY seq LIMIT 1").fetchone()
                if batch is None:
                    break
                seq, month, messages = batch
                try:
                    answer = self._post(seq, month, messages, timeout)
                except ReportFailed as failure:
                    if not failure.permanent:
                        raise
                    log.error("The platform refused usage batch %s (%s messages of %s): dropped", seq, messages,
                              month)
                    with self._transaction() as db:
                        db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                    continue
                with self._transaction() as db:
                    db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                    self._heard(db, answer)
                asked = asked or month == current
            if not asked:
                answer = self._post(None, current, 0, timeout)
                with self._transaction() as db:
                    self._heard(db, answer)
        except ReportFailed as failure:
            if self._failing != str(failure):
                waiting = self.state()["unreported"]
                log.warning("Usage report failed: %s; %d message(s) of this month wait, the runtime keeps "
                            "answering up to the last limit heard", failure, waiting)
                self._failing = str(failure)
            return False
        if self._failing is not None:
            log.info("Usage reports reach the platform again")
            self._failing = None
        return True

    def start(self) -> None:
        """Report now, then every `interval` seconds, on a thread of its own."""
        if self._thread is not None or not self.url:
            return

        def loop():
            while not self._stop.is_set():
                try:
                    self.report(timeout=min(REPORT_TIMEOUT, max(2.0, self.interval)))
                except Exception:  # noqa: BLE001 - the reporter must outlive any surprise; counts stay in the file
                    log.exception("Usage report failed")
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="wizchat-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

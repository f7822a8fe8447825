"""PostgreSQL plumbing shared by the vector store, the conversation store and their Test Connection steps.

- Connections go to the address `netguard` resolved and allowed (libpq `hostaddr`), while `host` keeps the
  name so that `sslmode=verify-full` still checks the certificate against it.
- Pools (`Pool`, in the caller's thread) are cached per settings fingerprint here; `pool_close(settings)` drops one.
- Every failure becomes a `BackendError` from the one taxonomy, with a message that never holds a secret.
- Every operation has a client-side deadline, on fresh and pooled connections alike: `statement_timeout`
  ends a slow query on the server, and a watchdog shuts the socket of a connection whose server stopped
  answering altogether (libpq has no read timeout), so a silent server is reported as `timeout` within the
  operation timeout plus half a second. Taking a connection from the pool takes the connect timeout at most.
- Provisioning helpers: one advisory lock for WizChat's DDL and the `wizchat_schema_version` table.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from byoi import certs, netguard
from byoi.errors import BackendError, Where, classify
from byoi.fingerprint import fingerprint
from byoi.scrub import scrub

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION_TABLE = "wizchat_schema_version"
# pg_advisory_xact_lock key for every WizChat DDL in a customer database ("wizchat" as a bigint).
PROVISION_LOCK_KEY = int.from_bytes(b"wizchat\0", "big") >> 1
MIN_SERVER_VERSION = 140000
POOL_MAX_SIZE = 4


def table_name(prefix: str, chatbot_id: uuid.UUID | str) -> str:
    """wizchat_<prefix>_<uuid hex>: derived from the chatbot's UUID only, never from anything a user typed."""
    try:
        hexid = uuid.UUID(str(chatbot_id)).hex
    except ValueError as error:
        raise BackendError("config", "The chatbot id is not a UUID.") from error
    return f"wizchat_{prefix}_{hexid}"


def _ssl_root_cert(ssl_mode: str, ca_cert: str = "") -> str | None:
    """The CA file libpq verifies the server against in verify-ca/verify-full (None: libpq's default).

    The component's own CA certificate when it has one (written to a private file: libpq reads files only),
    else BYOI_CA_BUNDLE when the operator set one, else the system trust store. libpq's `sslrootcert=system`
    is only accepted with verify-full, so verify-ca gets the system bundle file instead."""
    if ssl_mode not in ("verify-ca", "verify-full"):
        return None  # a root file would silently turn `require` into `verify-ca`
    if ca_cert:
        try:
            return certs.root_file(ca_cert)
        except ValueError as error:
            raise BackendError("tls", f"Your CA certificate cannot be used: {error}") from None
    bundle = netguard.ca_bundle()
    if bundle:
        return bundle
    if ssl_mode == "verify-full":
        return "system"
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile


def connect_kwargs(settings: dict, *, connect_timeout: float, addresses: list[str]) -> dict:
    host = str(settings.get("host") or "").strip()
    if host.startswith("[") and host.endswith("]"):  # an IPv6 literal written URL-style
        host = host[1:-1]
    ssl_mode = str(settings.get("ssl_mode") or "require")
    kwargs = {
        "host": host,
        "port": int(settings.get("port") or 5432),
        "dbname": str(settings.get("database") or ""),
        "user": str(settings.get("username") or ""),
        "password": str(settings.get("password") or ""),
        "sslmode": ssl_mode,
        # libpq takes whole seconds and treats anything below 2 as 2
        "connect_timeout": max(2, math.ceil(connect_timeout)),
        "application_name": "wizchat",
        # The kernel notices a peer that vanished (a dead host, a black-holing network) on its own: idle pooled
        # connections by keepalives, busy ones when data stays unacknowledged. A server that still ACKs but no
        # longer answers is the watchdog's (see `deadline`).
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    }
    if addresses:
        # One host entry per pinned address: libpq tries them in order and checks each against the name.
        kwargs["host"] = ",".join([host] * len(addresses))
        kwargs["hostaddr"] = ",".join(addresses)
    root = _ssl_root_cert(ssl_mode, str(settings.get("ca_cert") or ""))
    if root:
        kwargs["sslrootcert"] = root
    return kwargs


# --- error classification ---------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return scrub(text[0])[:300] if text else type(exc).__name__


def _who(user: str) -> str:
    return f"user {user!r}" if user else "the database user"


def psycopg_rules(error: BaseException, where: Where) -> BackendError | None:
    """psycopg / libpq failures (byoi.errors.classify calls this), naming what to fix from the component's
    settings when the caller gave them (never a secret)."""
    host, port = where.host or "the server", where.port or 5432
    database = str(where.setting("database") or "")
    user = str(where.setting("username") or "")
    ssl_mode = str(where.setting("ssl_mode") or "require")
    low = str(error).lower()
    state = getattr(error, "sqlstate", None) or ""

    if isinstance(error, pg_errors.InsufficientPrivilege) or state == "42501":
        return BackendError("permission", f"Permission denied for {_who(user)}: {_first_line(error)}.")
    if isinstance(error, pg_errors.QueryCanceled) or state == "57014":
        return BackendError("timeout", "The database did not answer within the operation timeout.")
    if state == "3D000" or ("database" in low and "does not exist" in low):
        named = f"The database {database!r} does not exist on {host}" if database else \
            "The database does not exist on this server"
        return BackendError("config", f"{named}: check the Database field (names are case-sensitive).",
                            hint="Check the Database field against the server's list of databases.")
    if state == "28P01" or "authentication failed" in low or ("role" in low and "does not exist" in low):
        if user:
            return BackendError("auth", f"Authentication failed for user {user!r}: the username or password is wrong.")
        return BackendError("auth", f"The database refused the user name or password{where.at}.")
    if "no password supplied" in low or "password is required" in low:
        return BackendError("auth", "The server asks for a password. Enter the database password.")
    if "invalid response to ssl negotiation" in low or "received invalid response" in low \
            or "expected authentication request" in low:
        return BackendError("protocol", f"{host}:{port} did not answer like a PostgreSQL server: check the host "
                                        "and port.")
    if ("ssl required" in low or "no encryption" in low or "ssl off" in low
            or "server requires ssl" in low):
        return BackendError("tls", f"The server requires SSL but SSL Mode is {ssl_mode!r}: choose 'require' or "
                                   "'verify-full'.")
    if "does not support ssl" in low:
        return BackendError("tls", f"The server does not support SSL but SSL Mode is {ssl_mode!r}: enable SSL on the "
                                   "server or choose a weaker SSL Mode.")
    if "does not match host name" in low:
        return BackendError("tls", f"The server's certificate is not valid for the host name {host!r}: connect with "
                                   "a name the certificate lists, or choose SSL Mode 'verify-ca'.")
    if ("certificate" in low or "ssl" in low or "tls" in low) and "refused" not in low:
        if "root certificate" in low and ("does not exist" in low or "could not" in low):
            return BackendError("tls", "No trusted CA certificates are available to verify the server: ask the "
                                       "operator to set BYOI_CA_BUNDLE, or choose SSL Mode 'require'.")
        if "verify failed" in low or "unknown ca" in low or "self-signed" in low or "self signed" in low:
            signer = "your CA certificate" if where.setting("ca_cert") else "a trusted CA"
            return BackendError("tls", f"The server's certificate is not signed by {signer} "
                                       f"(SSL Mode {ssl_mode!r}): check the server certificate or choose 'require'.")
        return BackendError("tls", f"The SSL handshake with {host}:{port} failed: {_first_line(error)}.")
    if state == "28000" or "pg_hba.conf" in low:
        return BackendError("auth", f"The server rejected {_who(user)} from this address: {_first_line(error)}.")
    if "connection refused" in low:
        return BackendError("refused", f"Connection{where.to} refused: nothing listens on this port.")
    if isinstance(error, pg_errors.ConnectionTimeout) or "timeout expired" in low or "timed out" in low:
        return BackendError("timeout", f"Connection{where.to} did not complete"
                                       f"{where.connect_within or ' within the connect timeout'}.")
    if "could not translate host name" in low or "name or service not known" in low:
        return BackendError("dns", f"The host name {where.host!r} does not resolve." if where.host
                            else "The host name does not resolve.")
    if state == "53300" or "too many" in low:
        return BackendError("unavailable", "The database has no free connection slots left.")
    if "server closed the connection" in low or "connection reset" in low or "terminating connection" in low:
        return BackendError("unavailable", f"{host}:{port} closed the connection unexpectedly (a restart or a "
                                           "network failure): try again.")
    if isinstance(error, psycopg.OperationalError):
        return BackendError("unavailable", f"The database connection{where.to} failed.")
    return None


# --- connections and pools --------------------------------------------------------------------------------

def _statement_timeout_ms(operation_timeout: float) -> int:
    return max(1, int(operation_timeout * 1000))


# The watchdog fires this long after the operation timeout, so that a server that is only slow is first stopped
# by its own statement_timeout (a clean QueryCanceled), and only a silent one loses its socket.
DEADLINE_GRACE = 0.5


class _Alarm:
    __slots__ = ("sock", "done", "fired")

    def __init__(self, sock: socket.socket):
        self.sock: socket.socket | None = sock
        self.done = False
        self.fired = False


class _Watchdog:
    """One thread for the whole process: it shuts down the socket of every armed connection whose deadline
    passed. The blocked read in libpq then returns, psycopg raises and the connection is discarded.

    It holds a duplicate of the connection's descriptor, so a socket closed and its number reused meanwhile is
    never touched."""

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, conn: psycopg.Connection, at: float) -> _Alarm | None:
        try:
            fd = conn.pgconn.socket
            alarm = _Alarm(socket.socket(fileno=os.dup(fd)))
        except (psycopg.Error, OSError):
            return None  # no socket (closed): nothing can hang on it
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._seq), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wizchat-pg-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm | None) -> bool:
        """Stop watching; whether the alarm had fired."""
        if alarm is None:
            return False
        with self._cond:
            alarm.done = True
            sock, alarm.sock = alarm.sock, None
        if sock is not None:
            sock.close()
        return alarm.fired

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].done:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        _, _, alarm = heapq.heappop(self._heap)
                        alarm.done = alarm.fired = True
                        sock, alarm.sock = alarm.sock, None
                        break
                    self._cond.wait(wait)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def deadline(conn: psycopg.Connection, at: float):
    """Bound what runs on `conn` in the block to the monotonic time `at`; raises _Expired if the watchdog had
    to cut the connection (whatever psycopg raised then)."""
    alarm = _WATCHDOG.arm(conn, at)
    try:
        yield
    except psycopg.Error as error:
        if _WATCHDOG.disarm(alarm):
            raise _Expired from error
        raise
    finally:
        _WATCHDOG.disarm(alarm)


class _Expired(Exception):
    """The watchdog cut a connection whose server did not answer in time."""


def _session_setup(conn: psycopg.Connection, operation_timeout: float) -> None:
    # `SET` rather than the `options` startup parameter: poolers such as PgBouncer reject `options`.
    with deadline(conn, time.monotonic() + operation_timeout + DEADLINE_GRACE):
        conn.execute(sql.SQL("SET statement_timeout = {}").format(
            sql.Literal(_statement_timeout_ms(operation_timeout))))


def connect(settings: dict, *, connect_timeout: float, operation_timeout: float, autocommit: bool = True,
            addresses: list[str] | None = None) -> psycopg.Connection:
    """One direct connection (Test Connection, diagnosis); the caller closes it."""
    if addresses is None:
        addresses = netguard.pinned_addresses(settings, 5432)
    try:
        conn = psycopg.connect(**connect_kwargs(settings, connect_timeout=connect_timeout, addresses=addresses),
                               autocommit=autocommit)
    except psycopg.Error as error:
        raise classify(error, settings=settings) from None
    try:
        _session_setup(conn, operation_timeout)
        if not autocommit:
            conn.commit()
    except _Expired:
        conn.close()
        raise _silent(settings, operation_timeout) from None
    except psycopg.Error as error:
        conn.close()
        raise classify(error, settings=settings) from None
    return conn


def _silent(settings: dict, operation_timeout: float) -> BackendError:
    where = Where(str(settings.get("host") or "") or None, settings.get("port"))
    return BackendError("timeout", f"The database{where.at} stopped answering: no reply within "
                                   f"{operation_timeout:g} seconds.")


CHECK_AFTER_IDLE = 2.0  # seconds a pooled connection may sit unused before it is checked on checkout
MAX_IDLE = 300.0  # seconds an unused pooled connection is kept


def _configure(operation_timeout: float, extra: Callable[[psycopg.Connection], None] | None):
    def configure(conn: psycopg.Connection) -> None:
        _session_setup(conn, operation_timeout)
        if extra is not None:
            with deadline(conn, time.monotonic() + operation_timeout + DEADLINE_GRACE):
                extra(conn)

    return configure


def _checkout_timeout(connect_timeout: float) -> float:
    """How long a checkout may take: what libpq may take to open a connection (it rounds up to whole seconds,
    at least 2), and a little more. A check of an idle connection gets as long; a caller that finds every
    connection busy for as long does its work on a connection of its own."""
    return max(2, math.ceil(connect_timeout)) + DEADLINE_GRACE


class _PoolFull(Exception):
    """Every pooled connection stayed busy for the checkout timeout."""


class Pool:
    """A small pool of autocommit connections that does everything in the caller's thread.

    Opening a connection happens in the thread that needs it, so its failure (refused, wrong password, a
    silent server at the connect timeout) reaches that caller at once, with its real cause: a pool that connects
    in the background only lets its callers wait for its timeout, and a connection returned through a worker
    can sit behind a connection attempt to a server that hangs. A connection idle for CHECK_AFTER_IDLE is checked
    (with a deadline) before it is handed out; broken ones are dropped."""

    def __init__(self, kwargs: dict, *, max_size: int, configure: Callable[[psycopg.Connection], None],
                 connect_timeout: float):
        self._kwargs, self._max, self._configure = kwargs, max_size, configure
        self._checkout = _checkout_timeout(connect_timeout)
        self._idle: list[tuple[psycopg.Connection, float]] = []  # (connection, returned at), newest last
        self._size = 0  # connections open or being opened
        self._cond = threading.Condition()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn = self._get()
        try:
            yield conn
        finally:
            self._put(conn)

    def _get(self) -> psycopg.Connection:
        end = time.monotonic() + self._checkout
        while True:
            conn, returned, stale = None, 0.0, []
            with self._cond:
                while True:
                    if self._closed:
                        raise BackendError("unavailable", "The database connections were closed: try again.")
                    stale += self._expired()
                    if self._idle:
                        conn, returned = self._idle.pop()
                        break
                    if self._size < self._max:
                        self._size += 1
                        break
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        raise _PoolFull
                    self._cond.wait(remaining)
            for old in stale:
                _close_quietly(old)
            if conn is None:
                return self._open()
            if conn.closed or conn.broken:
                self._drop(conn)
                continue
            if time.monotonic() - returned < CHECK_AFTER_IDLE:
                return conn
            try:
                with deadline(conn, end):
                    conn.execute("")
            except _Expired:
                self._drop(conn)
                raise  # the server stopped answering: opening another connection would only wait as long
            except psycopg.Error:
                self._drop(conn)  # dropped by the server or a proxy meanwhile: take another one
                continue
            return conn

    def _open(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(**self._kwargs, autocommit=True)
        except BaseException:
            self._lost()
            raise
        try:
            self._configure(conn)
        except BaseException:
            self._drop(conn)
            raise
        return conn

    def _put(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._drop(conn)
            return
        with self._cond:
            if not self._closed:
                self._idle.append((conn, time.monotonic()))
                self._cond.notify()
                return
        self._drop(conn)

    def _expired(self) -> list[psycopg.Connection]:
        """Idle connections unused for MAX_IDLE, taken out of the pool (caller holds the lock, closes them)."""
        limit = time.monotonic() - MAX_IDLE
        old = [conn for conn, at in self._idle if at < limit]
        if old:
            self._idle = [(conn, at) for conn, at in self._idle if at >= limit]
            self._size -= len(old)
        return old

    def _drop(self, conn: psycopg.Connection) -> None:
        _close_quietly(conn)
        self._lost()

    def _lost(self) -> None:
        with self._cond:
            self._size -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            self._cond.notify_all()
        for conn, _ in idle:
            _close_quietly(conn)


def _close_quietly(conn: psycopg.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


_POOLS: dict[str, tuple[str, Pool]] = {}  # key -> (fingerprint of the settings alone, pool)
_POOLS_LOCK = threading.Lock()
_INHERITED: list = []  # a forked child's copies of its parent's pools: kept, never used nor closed


def _forget_after_fork() -> None:
    global _POOLS_LOCK
    # Closing would end the parent's sessions (the sockets are shared): keep the objects alive, unused.
    _INHERITED.append(dict(_POOLS))
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def pool_get(settings: dict, *, connect_timeout: float, operation_timeout: float, name: str,
             configure: Callable[[psycopg.Connection], None] | None = None) -> Pool:
    """The cached pool (autocommit connections) for these settings, created on first use."""
    key = fingerprint([settings, connect_timeout, operation_timeout, name, netguard.ca_bundle()])
    entry = _POOLS.get(key)
    if entry is not None:
        return entry[1]
    addresses = netguard.pinned_addresses(settings, 5432)
    with _POOLS_LOCK:
        entry = _POOLS.get(key)
        if entry is None:
            pool = Pool(connect_kwargs(settings, connect_timeout=connect_timeout, addresses=addresses),
                        max_size=POOL_MAX_SIZE, configure=_configure(operation_timeout, configure),
                        connect_timeout=connect_timeout)
            entry = _POOLS[key] = (fingerprint(settings), pool)
        return entry[1]


def pool_close(settings: dict | None = None) -> None:
    """Close every pool (settings None) or every pool whose fingerprint covers these settings."""
    with _POOLS_LOCK:
        if settings is None:
            victims = list(_POOLS)
        else:
            wanted = fingerprint(settings)
            victims = [k for k, (fp, _) in _POOLS.items() if fp == wanted]
        pools = [_POOLS.pop(k)[1] for k in victims]
    for pool in pools:
        pool.close()


def _work(conn: psycopg.Connection, work: Callable[[psycopg.Connection], T], atomic: bool, at: float) -> T:
    with deadline(conn, at):
        if atomic:
            with conn.transaction():
                return work(conn)
        return work(conn)


def run(settings: dict, work: Callable[[psycopg.Connection], T], *, connect_timeout: float,
        operation_timeout: float, name: str, configure: Callable[[psycopg.Connection], None] | None = None,
        atomic: bool = False) -> T:
    """`work(conn)` on a pooled autocommit connection — inside one transaction when `atomic` — and its
    result, within the operation timeout (plus DEADLINE_GRACE) once it has a connection, and the checkout within
    the connect timeout. A pooled connection the server dropped is replaced and the work run once more (every
    caller's work is a read or an idempotent write). When every pooled connection stays busy, the work runs on
    a connection of its own. Failures become BackendError."""
    pool = pool_get(settings, connect_timeout=connect_timeout, operation_timeout=operation_timeout, name=name,
                    configure=configure)
    for attempt in (1, 2):
        try:
            with pool.connection() as conn:
                try:
                    return _work(conn, work, atomic, time.monotonic() + operation_timeout + DEADLINE_GRACE)
                except psycopg.OperationalError:
                    if attempt == 1 and conn.broken:
                        continue
                    raise
        except _PoolFull:
            return _direct(settings, work, connect_timeout=connect_timeout, operation_timeout=operation_timeout,
                           configure=configure, atomic=atomic)
        except _Expired:
            raise _silent(settings, operation_timeout) from None
        except psycopg.Error as error:
            raise classify(error, settings=settings) from None
    raise BackendError("unavailable", "The database dropped the connection twice in a row: try again.")


def _direct(settings: dict, work: Callable[[psycopg.Connection], T], *, connect_timeout: float,
            operation_timeout: float, configure: Callable[[psycopg.Connection], None] | None, atomic: bool) -> T:
    """The work on a connection of its own, closed afterwards."""
    conn = connect(settings, connect_timeout=connect_timeout, operation_timeout=operation_timeout)
    try:
        at = time.monotonic() + operation_timeout + DEADLINE_GRACE
        if configure is not None:
            with deadline(conn, at):
                configure(conn)
        return _work(conn, work, atomic, at)
    except _Expired:
        raise _silent(settings, operation_timeout) from None
    except psycopg.Error as error:
        raise classify(error, settings=settings) from None
    finally:
        conn.close()


# --- provisioning helpers ---------------------------------------------------------------------------------

def provision_lock(conn: psycopg.Connection) -> None:
    """Serialise WizChat's DDL in this database until the transaction ends (concurrent first uses)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", [PROVISION_LOCK_KEY])


def relation_exists(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [sql.Identifier(name).as_string(conn)]).fetchone()
    return bool(row and row[0])


def schema_version_ensure(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, kind text NOT NULL, version integer NOT NULL, "
        "dimensions integer, created timestamptz NOT NULL DEFAULT now(), updated timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(SCHEMA_VERSION_TABLE)))


def schema_version_get(conn: psycopg.Connection, table: str) -> tuple[int, int | None] | None:
    if not relation_exists(conn, SCHEMA_VERSION_TABLE):
        return None
    row = conn.execute(sql.SQL("SELECT version, dimensions FROM {} WHERE table_name = %s").format(
        sql.Identifier(SCHEMA_VERSION_TABLE)), [table]).fetchone()
    return (row[0], row[1]) if row else None


def schema_version_set(conn: psycopg.Connection, table: str, kind: str, version: int,
                       dimensions: int | None = None) -> None:
    conn.execute(sql.SQL(
        "INSERT INTO {} (table_name, kind, version, dimensions) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version, dimensions = EXCLUDED.dimensions, "
        "updated = now()"
    ).format(sql.Identifier(SCHEMA_VERSION_TABLE)), [table, kind, version, dimensions])


def server_version(conn: psycopg.Connection) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0])


def require_server_version(conn: psycopg.Connection) -> int:
    num = server_version(conn)
    if num < MIN_SERVER_VERSION:
        raise BackendError("version", f"PostgreSQL {num // 10000}.{num % 10000} is too old: PostgreSQL 14+ is "
                                      "required.")
    return num


def pgvector_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return row[0] if row else None


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def pgvector_ensure(conn: psycopg.Connection) -> str:
    """The installed pgvector version, creating the extension when this user may; else extension_missing.

    Runs inside the caller's transaction (a savepoint keeps a refused CREATE from aborting it)."""
    version = pgvector_version(conn)
    if version:
        return version
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except (pg_errors.InsufficientPrivilege, pg_errors.UndefinedFile, pg_errors.FeatureNotSupported) as error:
        raise BackendError("extension_missing", "pgvector is not installed in this database and this user cannot "
                                                "install it.") from error
    except psycopg.Error as error:
        if "vector" in str(error).lower() and ("not available" in str(error).lower()
                                               or "could not open extension" in str(error).lower()):
            raise BackendError("extension_missing", "pgvector is not available on this server.") from error
        raise
    return pgvector_version(conn) or "?"


def keyset_query(columns: tuple[str, ...], table: str, after_id: str | None,
                 batch_size: int) -> tuple[sql.Composed, list]:
    """One page of `table` in id order after `after_id` (the first column must be the id)."""
    where = sql.SQL("WHERE id > %s ") if after_id is not None else sql.SQL("")
    params = ([after_id] if after_id is not None else []) + [batch_size]
    query = sql.SQL("SELECT {} FROM {} {}ORDER BY id LIMIT %s").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table), where)
    return query, params


def keyset_pages(fetch: Callable[[str | None], list], batch_size: int, after_id: str | None = None) -> Iterator[list]:
    """Yield pages of rows from `fetch(last_id)` until a short or empty page: each page is one short query."""
    last = after_id
    while True:
        rows = fetch(last)
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


def row_count(conn: psycopg.Connection, table: str) -> int:
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0])


def ids_in(conn: psycopg.Connection, table: str, ids: list[str]) -> set[str]:
    """Which of `ids` the table holds (a store's rows are keyed by a text `id`)."""
    rows = conn.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)),
                        [list(ids)]).fetchall()
    return {r[0] for r in rows}


def drop_table(conn: psycopg.Connection, table: str) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))

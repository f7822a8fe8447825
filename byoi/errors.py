"""One error taxonomy for Test Connection and the chat path, with the spec's troubleshooting hints, and the
one classifier that turns any exception into it.

`classify(exc, ...)` walks the exception's chain; an error from a library WizChat talks to is judged by that
library's rules, kept beside the backend that uses the library (LIBRARY_RULES); socket and TLS errors by the
generic rules here. Messages are written by the rules, never copied from the exception: library messages can
quote a URL with its credentials or a connection string."""

from __future__ import annotations

import errno
import importlib
import logging
import socket
import ssl
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TIMEOUT_HINT = "Connection Timeout: check firewall rules, verify the host is reachable, confirm the port is open."
AUTH_HINT = "Authentication Failed: verify the API key or password, check user permissions, confirm the account is active."
SSL_HINT = ("SSL Error: match the SSL mode with the server configuration, verify certificate validity, "
            "try different SSL modes.")

HINTS: dict[str, str] = {
    "timeout": TIMEOUT_HINT,
    "dns": "The host name does not resolve: check the spelling and that it is published in public DNS.",
    "refused": "Connection refused: " + TIMEOUT_HINT.split(": ", 1)[1] + " Check that the service listens on this port.",
    "blocked_address": ("The address is in a range WizChat does not connect to. Use an address reachable from "
                        "WizChat's egress addresses (listed on the BYOI panel) and allow those in your firewall, "
                        "or ask your WizChat operator to allow-list your network."),
    "tls": SSL_HINT,
    "auth": AUTH_HINT,
    "permission": ("The account lacks a required permission. Grant it (for databases: CREATE on the database or "
                   "schema) to the dedicated service account — never use admin credentials."),
    "version": "The server version is too old: PostgreSQL 14+ with pgvector, or FalkorDB 4.0+, is required.",
    "extension_missing": ("The pgvector extension is not installed in this database and this user cannot create "
                          "it. Ask your DBA to run: CREATE EXTENSION vector;"),
    "model_not_found": "The endpoint does not serve this model. Check the Model Name against the provider's list.",
    "dimension_mismatch": ("The vectors have a different length than Dimensions. Set Dimensions to the model's "
                           "output size, or choose a model that supports the requested size."),
    "protocol": ("The server did not answer like an OpenAI-compatible API. Check that the endpoint is the API's "
                 "base URL (usually ending in /v1)."),
    "config": "A setting is missing or invalid. Correct the highlighted field.",
    "unavailable": "The component failed. Check its status and try again.",
}
CODES = list(HINTS)
# Failures that may go away by themselves: worth an automatic retry.
TRANSIENT_CODES = frozenset({"timeout", "refused", "unavailable", "dns"})


class NotFound(Exception):
    """What was asked for does not exist, or belongs to another account. Services raise it; views answer 404
    (never saying which of the two it was)."""


class BackendError(Exception):
    """A component failure classified into the taxonomy. Its message never contains a secret."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        assert code in HINTS, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint if hint is not None else HINTS[code]

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable, so Celery can record it
        return (type(self), (self.code, self.message, self.hint))

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


# --- classification ---------------------------------------------------------------------------------------

# Each library's rules live beside the backend that uses it: (error, Where) -> BackendError | None; None lets
# the next exception of the chain (the cause) decide.
LIBRARY_RULES = {
    "psycopg": "byoi.backends.pg.psycopg_rules",
    "redis": "byoi.backends.graph.redis_rules",
    "falkordb": "byoi.backends.graph.redis_rules",
    "openai": "byoi.backends.http.openai_rules",
    "httpx": "byoi.backends.http.httpx_rules",
    "httpcore": "byoi.backends.http.httpx_rules",
}


@dataclass(frozen=True)
class Where:
    """What the caller knows about the failed connection, for the messages (never a secret in them)."""

    host: str | None = None
    port: int | None = None
    timeout: float | None = None  # the operation timeout
    connect_timeout: float | None = None
    settings: dict | None = field(default=None, repr=False)  # the component's settings, when the caller has them

    @property
    def to(self) -> str:
        """" to host:port", " to host" or ""."""
        if self.host and self.port:
            return f" to {self.host}:{self.port}"
        return f" to {self.host}" if self.host else ""

    @property
    def at(self) -> str:
        return self.to.replace(" to ", " at ")

    @property
    def name(self) -> str:
        return self.to.replace(" to ", " ")

    @property
    def within(self) -> str:
        return f" within {self.timeout:g} seconds" if self.timeout else ""

    @property
    def connect_within(self) -> str:
        return f" within {self.connect_timeout:g} seconds" if self.connect_timeout else self.within

    def setting(self, name: str, default=None):
        value = (self.settings or {}).get(name)
        return default if value is None else value


def chain(exc: BaseException | None):
    """The exception, then its causes (explicit or implicit), each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify(exc: BaseException, *, host: str | None = None, port: int | None = None, timeout: float | None = None,
             connect_timeout: float | None = None, settings: dict | None = None) -> BackendError:
    """The BackendError for any exception from a component (socket, ssl, httpx, openai, psycopg, redis…).

    `settings` (the component's) lets the rules name what to fix (the user, the database, the SSL mode); host
    and port default to theirs. Never raises: an error no rule knows is "unavailable"."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(getattr(exc, "error", None), BackendError):  # a failure that carries its classification
        return exc.error
    settings = settings or None
    if settings is not None:
        host = host or (str(settings.get("host")) if settings.get("host") else None)
        port = port or settings.get("port")
    where = Where(host, port, timeout, connect_timeout, settings)
    try:
        for error in chain(exc):
            found = _rules_for(error)(error, where)
            if found is not None:
                return found
    except Exception:  # noqa: BLE001 - classification must never raise itself
        log.warning("Could not classify %s", type(exc).__name__, exc_info=True)
    return BackendError("unavailable", f"The connection{where.to} failed ({type(exc).__name__}).")


def _rules_for(error: BaseException):
    path = LIBRARY_RULES.get(type(error).__module__.split(".")[0])
    if path is None:
        return generic_rules
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def generic_rules(error: BaseException, where: Where) -> BackendError | None:
    """Socket, DNS and TLS failures, whatever library met them."""
    if isinstance(error, TimeoutError | socket.timeout):
        return BackendError("timeout", f"The server{where.at} did not answer{where.within}.")
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = getattr(error, "verify_message", "") or "not trusted"
        if where.host and ("hostname" in reason.lower() or "ip address mismatch" in reason.lower()):
            return BackendError("tls", f"The server's TLS certificate is not valid for {where.host!r}: {reason}.")
        return BackendError("tls", f"The server's TLS certificate was rejected: {reason}.")
    if isinstance(error, ssl.SSLError):
        return BackendError("tls", f"The TLS handshake{where.to} failed ({error.reason or 'SSL error'}).")
    if isinstance(error, socket.gaierror):
        return BackendError("dns", f"The host name{where.name} does not resolve.")
    if isinstance(error, ConnectionRefusedError):
        return BackendError("refused", f"Connection{where.to} refused: nothing listens on this port.")
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return BackendError("protocol", f"The server{where.at} closed the connection.")
    if isinstance(error, OSError) and error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return BackendError("timeout", f"The host{where.name} is unreachable.")
    return None

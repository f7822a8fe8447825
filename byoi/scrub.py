"""Logging filters that keep secrets out of log lines.

`SecretScrubFilter` removes secret-looking values (passwords in URLs, API keys, Authorization headers,
key=value pairs) and, while code runs inside `secrets_known(...)`, the exact secret values of the
component being used — a password that happens to appear bare in a driver's error message included."""

import contextlib
import contextvars
import logging
import re

_PATTERNS = [
    (re.compile(r"(?i)(://[^:/@\s]*:)[^@\s]+(@)"), r"\1***\2"),  # scheme://user:PASSWORD@host
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[=:]\s*[\"']?)(?:(bearer|basic|token)\s+)?[^\s\"',}]+"),
     lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + "***"),
    (re.compile(r"(?i)\b(password|passwd|pwd|api[_-]?key|x-api-key|secret|token|access[_-]?key)([\"']?\s*[=:]\s*)"
                r"(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)"),
     r"\1\2***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-***"),
]

_MIN_KNOWN_SECRET = 4  # shorter values would blank out ordinary words
_known: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("byoi_known_secrets", default=())


def scrub(text: str, known: tuple[str, ...] | None = None) -> str:
    for value in sorted(known if known is not None else _known.get(), key=len, reverse=True):
        if value and len(value) >= _MIN_KNOWN_SECRET:
            text = text.replace(value, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


@contextlib.contextmanager
def secrets_known(values):
    """Within this block, log lines (and `scrub`) also blank these exact secret values."""
    extra = tuple(str(v) for v in values if isinstance(v, str) and v)
    token = _known.set(_known.get() + extra)
    try:
        yield
    finally:
        _known.reset(token)


class SecretScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the log line
            message = str(record.msg)
        scrubbed = scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            scrubbed += "\n" + scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = scrubbed, None
        return True


def install_scrub_filter(logger: logging.Logger | None = None, **kwargs) -> None:
    """Put SecretScrubFilter on every handler of `logger` (default: root) that lacks it.

    Celery's worker replaces the root logger's handlers with its own, dropping the filter Django's LOGGING
    configured; byoi.tasks calls this from Celery's after_setup_logger signals."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, SecretScrubFilter) for f in handler.filters):
            handler.addFilter(SecretScrubFilter())

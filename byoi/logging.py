"""A logging filter that scrubs secret-looking values (passwords in URLs, API keys, key=value pairs)."""

import logging
import re

_PATTERNS = [
    (re.compile(r"(?i)(://[^:/@\s]*:)[^@\s]+(@)"), r"\1***\2"),  # scheme://user:PASSWORD@host
    (re.compile(r"(?i)\b(password|passwd|pwd|api[_-]?key|secret|token|authorization)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
     r"\1\2***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-***"),
]


def scrub(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


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

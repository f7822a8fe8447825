"""The website widget: a script tag that shows a chat bubble and opens an iframe served by WizChat (or by the
chatbot's deployed runtime).

Where it may appear is the chatbot's allowed origins — an empty list means nowhere, never everywhere. The browser
enforces it twice: the iframe carries `Content-Security-Policy: frame-ancestors <origins>`, and the script
running in the customer's page gets a short-lived session token only when its `Origin` is on the list (CORS
headers only for those origins). The token is signed with a key of the chatbot's own (so the chatbot's runtime
can verify it too) and lets the frame call the public API for that chatbot alone, rate-limited per session. The
page never holds a secret key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from urllib.parse import urlsplit

from django.core import signing

TOKEN_START = "wzs_"  # noqa: S105 - a marker, not a secret
SESSION_SECONDS = 3600


class OriginRejected(ValueError):
    """An allowed-origin entry that is not an origin; the message says what to write instead."""


def origin_normal(text: str) -> str:
    """`scheme://host[:port]` for one entry typed by the customer (a trailing slash is forgiven)."""
    text = text.strip()
    if any(ord(c) < 33 for c in text):
        raise OriginRejected(f"“{text[:60]}” contains spaces or control characters.")
    if text == "*" or "*" in text:
        raise OriginRejected("Wildcards are not accepted: list each website, like https://www.example.com.")
    parts = urlsplit(text.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OriginRejected(f"“{text[:60]}” is not a website origin: write it like https://www.example.com.")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise OriginRejected(f"“{text[:60]}” has more than an origin: keep only scheme, host and port, like "
                             "https://www.example.com.")
    try:
        port = parts.port
    except ValueError:
        raise OriginRejected(f"“{text[:60]}” has a malformed port.") from None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def origins_clean(text: str) -> list[str]:
    """The allowed origins typed one per line (or comma-separated), normalised and de-duplicated."""
    out: list[str] = []
    for item in text.replace(",", "\n").splitlines():
        if item.strip():
            origin = origin_normal(item)
            if origin not in out:
                out.append(origin)
    if len(out) > 50:
        raise OriginRejected("List at most 50 websites.")
    return out


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    if not origin or not allowed:
        return False
    try:
        return origin_normal(origin) in allowed
    except OriginRejected:
        return False


def frame_ancestors(allowed: list[str]) -> str:
    return "frame-ancestors " + (" ".join(allowed) if allowed else "'none'")


def signing_key(pepper: str) -> str:
    """The chatbot's widget signing key, from its key-hashing key (chatbots.apikeys.chatbot_pepper)."""
    return hmac.new(pepper.encode(), b"widget-sessions", hashlib.sha256).hexdigest()


def session_token(key: str, chatbot_id, origin: str) -> str:
    """`wzs_<chatbot uuid hex>.<signed session>`: the chatbot is readable so the verifier can pick its key."""
    payload = {"c": str(chatbot_id), "o": origin, "s": secrets.token_hex(8)}
    signed = signing.dumps(payload, key=key, salt="wizchat.widget", compress=False)
    return f"{TOKEN_START}{uuid.UUID(str(chatbot_id)).hex}.{signed}"


def session_chatbot(token: str) -> uuid.UUID | None:
    """The chatbot a widget token claims to be for (not yet verified)."""
    if not token.startswith(TOKEN_START):
        return None
    try:
        return uuid.UUID(token[len(TOKEN_START):].partition(".")[0])
    except ValueError:
        return None


def session_verify(key: str, token: str, chatbot_id) -> dict | None:
    """{"c", "o", "s"} of a valid, unexpired token for this chatbot; None otherwise."""
    if session_chatbot(token) != uuid.UUID(str(chatbot_id)):
        return None
    try:
        payload = signing.loads(token[len(TOKEN_START):].partition(".")[2], key=key, salt="wizchat.widget",
                                max_age=SESSION_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("c") != str(chatbot_id):
        return None
    return payload


def snippet(base_url: str, chatbot_id) -> str:
    """The one tag a customer pastes into their site."""
    return (f'<script src="{base_url}/widget.js" data-wizchat-chatbot="{chatbot_id}" '
            'async></script>')

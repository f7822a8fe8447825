"""Keys to a chatbot's public API.

A key reads `wzc_<prefix>_<secret>`. WizChat keeps the prefix (to find the key and to show which one it is) and
HMAC-SHA256 of the whole key under a key-hashing key of the chatbot's own (derived from API_KEY_PEPPER), so a
stolen table opens nothing and a deployed runtime can verify its chatbot's keys without being able to verify any
other chatbot's. Comparison is constant-time. The key itself is shown once, when it is created."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from byoi.audit import audit_record
from byoi.errors import NotFound
from wizchat.plans import plan_check_api_key_limit
from wizchat.textcheck import text_problem

from .models import ApiKey, Chatbot

KEY_START = "wzc_"
_PREFIX_CHARS = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 10


class KeyRejected(ValueError):
    """A key name that cannot be used; the message says why."""


def chatbot_pepper(chatbot_id) -> str:
    """The chatbot's own key-hashing key (hex): what its deployed runtime receives, never the platform's."""
    return hmac.new(settings.API_KEY_PEPPER.encode(), f"api-keys:{chatbot_id}".encode(), hashlib.sha256).hexdigest()


def key_hash(pepper: str, key: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key, None for anything else (checked before any lookup)."""
    if not key.startswith(KEY_START) or len(key) > 200:
        return None
    prefix, _, secret = key[len(KEY_START):].partition("_")
    if len(prefix) != PREFIX_LENGTH or len(secret) < 20 or any(c not in _PREFIX_CHARS for c in prefix):
        return None
    return prefix


def key_matches(pepper: str, key: str, hashed: str) -> bool:
    return hmac.compare_digest(key_hash(pepper, key), hashed)


def apikey_create(chatbot: Chatbot, name: str, user=None) -> tuple[ApiKey, str]:
    """(the stored key, the key itself): the caller shows the key once and forgets it."""
    name = " ".join((name or "").split())
    if not name:
        raise KeyRejected("Give the key a name, e.g. the app or website that will use it.")
    if len(name) > 100:
        raise KeyRejected("Keep the key's name under 100 characters.")
    if problem := text_problem(name, "the key's name"):
        raise KeyRejected(problem)
    with transaction.atomic():
        Chatbot.objects.select_for_update().filter(pk=chatbot.pk).first()  # one creation at a time per chatbot
        plan_check_api_key_limit(chatbot)
        prefix = "".join(secrets.choice(_PREFIX_CHARS) for _ in range(PREFIX_LENGTH))
        key = f"{KEY_START}{prefix}_{secrets.token_urlsafe(30)}"
        row = ApiKey.objects.create(chatbot=chatbot, name=name, prefix=prefix,
                                    hashed=key_hash(chatbot_pepper(chatbot.id), key), created_by=user)
        audit_record("chatbot.api_key_created", chatbot=chatbot, actor=user, prefix=prefix, name=name)
    return row, key


def apikey_list(chatbot: Chatbot) -> list[ApiKey]:
    return list(chatbot.api_keys.all())


def apikey_get(chatbot: Chatbot, key_id) -> ApiKey:
    row = chatbot.api_keys.filter(pk=key_id).first()
    if row is None:
        raise NotFound("No such API key.")
    return row


def apikey_revoke(chatbot: Chatbot, key_id, user=None) -> ApiKey:
    """Stops the key on the platform at once (a deployed runtime at its next deploy)."""
    row = apikey_get(chatbot, key_id)
    if row.revoked is None:
        row.revoked = timezone.now()
        row.save(update_fields=["revoked"])
        audit_record("chatbot.api_key_revoked", chatbot=chatbot, actor=user, prefix=row.prefix, name=row.name)
    return row


def apikey_authenticate(key: str) -> ApiKey | None:
    """The active key `key` is, with its chatbot and plan loaded; None when it is malformed, unknown or revoked."""
    prefix = key_prefix(key)
    if prefix is None:
        return None
    row = (ApiKey.objects.select_related("chatbot__account__plan")
           .filter(prefix=prefix, revoked__isnull=True).first())
    if row is None or not key_matches(chatbot_pepper(row.chatbot_id), key, row.hashed):
        return None
    now = timezone.now()
    if row.last_used is None or (now - row.last_used).total_seconds() > 60:  # one write a minute at most
        ApiKey.objects.filter(pk=row.pk).update(last_used=now)
    return row


def runtime_keys(chatbot: Chatbot) -> str:
    """WIZCHAT_API_KEYS for a deployment: `prefix:hash` of each active key (nothing a key can be made from)."""
    rows = chatbot.api_keys.filter(revoked__isnull=True).order_by("created")
    return ",".join(f"{row.prefix}:{row.hashed}" for row in rows)

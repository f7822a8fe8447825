"""One way to fingerprint settings (secrets included) without keeping them: SHA-256 over a key and the
settings' canonical JSON. In memory (backend instances, pools, clients, what was provisioned) the key is a
random salt of this process; fingerprints stored in the database (byoi.models.settings_fingerprint) are keyed
with BYOI_ENCRYPTION_KEY."""

import hashlib
import json
import secrets

_SALT = secrets.token_hex(16)  # never stored, never logged


def fingerprint(payload, *, key: str | None = None) -> str:
    """A hex digest of `payload` (anything JSON can write; other values as str), keyed with `key`, or with the
    process's salt when None."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(((_SALT if key is None else key) + text).encode()).hexdigest()

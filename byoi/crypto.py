"""The BYOI key ring: encrypt with the current key, decrypt with the current or any old key.

django-cryptography builds one FernetBytes per encrypted field at import time, from CRYPTOGRAPHY_KEY for
the cipher but from SECRET_KEY for the HMAC. We swap that for a key ring whose cipher and HMAC keys both
derive from BYOI_ENCRYPTION_KEY (so BYOI secrets never depend on SECRET_KEY, and a wrong key is detected
by its signature, not by luck in the padding), and which tries BYOI_ENCRYPTION_OLD_KEYS when the current
key does not open a value, so `rotate_byoi_key` can re-encrypt while old ciphertexts stay readable.

The ring serves every encrypted field of the project (BYOI secrets, document staging, the chat outbox), so
one rotation covers them all. Values written in django-cryptography's own format (before the ring was
installed) stay readable and are moved to the ring's format by the next rotation.
"""

import secrets
import threading

from django.conf import settings
from django.core.signing import BadSignature
from django_cryptography.core.signing import FernetSigner
from django_cryptography.utils.crypto import FernetBytes, InvalidToken

_SALT = b"wizchat-byoi-secrets"


def _derive(raw: str) -> tuple[bytes, bytes]:
    """(cipher key, HMAC key) for one raw key string."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf import pbkdf2

    kdf = pbkdf2.PBKDF2HMAC(algorithm=hashes.SHA256(), length=64, salt=_SALT, iterations=30000)
    material = kdf.derive(raw.encode())
    return material[:32], material[32:]


def _derive_legacy(raw: str) -> bytes:
    """django-cryptography's own derivation of CRYPTOGRAPHY_KEY (its HMAC key is SECRET_KEY)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf import pbkdf2

    kdf = pbkdf2.PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"django-cryptography", iterations=30000)
    return kdf.derive(raw.encode())


def new_key() -> str:
    """A fresh random key in the format the settings expect."""
    return secrets.token_urlsafe(48)


class KeyRing:
    """Quacks like FernetBytes; reads the keys from settings on each use so tests and rotation can change them."""

    _cache: dict[str, FernetBytes] = {}
    _lock = threading.Lock()

    def _fernet(self, raw: str) -> FernetBytes:
        fernet = self._cache.get(raw)
        if fernet is None:
            cipher_key, mac_key = _derive(raw)
            fernet = FernetBytes(cipher_key, FernetSigner(mac_key))
            with self._lock:
                self._cache[raw] = fernet
        return fernet

    @staticmethod
    def keys() -> list[str]:
        return [settings.BYOI_ENCRYPTION_KEY, *settings.BYOI_ENCRYPTION_OLD_KEYS]

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet(settings.BYOI_ENCRYPTION_KEY).encrypt(data)

    def _legacy(self, raw: str) -> FernetBytes:
        cache_key = "legacy:" + raw
        fernet = self._cache.get(cache_key)
        if fernet is None:
            fernet = FernetBytes(_derive_legacy(raw), FernetSigner(settings.SECRET_KEY))
            with self._lock:
                self._cache[cache_key] = fernet
        return fernet

    def decrypt(self, data: bytes, ttl=None) -> bytes:
        for raw in self.keys():
            try:
                return self._fernet(raw).decrypt(data, ttl)
            except (InvalidToken, BadSignature):
                continue
        for raw in self.keys():
            try:
                return self._legacy(raw).decrypt(data, ttl)
            except (InvalidToken, BadSignature):
                continue
        raise InvalidToken("No BYOI encryption key (current or old) decrypts this value.")

    def is_current(self, data: bytes) -> bool:
        try:
            self._fernet(settings.BYOI_ENCRYPTION_KEY).decrypt(data)
            return True
        except (InvalidToken, BadSignature):
            return False


KEY_RING = KeyRing()


def encrypted_models() -> list[tuple[type, list[str]]]:
    """[(model, [encrypted field names])] for every model of the project with an encrypted field."""
    from django.apps import apps
    from django_cryptography.fields import EncryptedMixin

    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)]
        if names:
            found.append((model, names))
    return found


def install_key_ring() -> None:
    for model, names in encrypted_models():
        for name in names:
            model._meta.get_field(name)._fernet = KEY_RING

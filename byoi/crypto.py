"""The BYOI key ring: encrypt with the current key, decrypt with the current or any old key.

django-cryptography builds one Fernet per encrypted field from CRYPTOGRAPHY_KEY at import time; we swap
that for a key ring so `rotate_byoi_key` can re-encrypt while old ciphertexts stay readable.
"""

from django.conf import settings
from django_cryptography.utils.crypto import FernetBytes, InvalidToken


def _derive(raw: str) -> bytes:
    # The same derivation django-cryptography applies to CRYPTOGRAPHY_KEY.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf import pbkdf2

    kdf = pbkdf2.PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"django-cryptography", iterations=30000)
    return kdf.derive(raw.encode())


class KeyRing:
    """Quacks like FernetBytes; reads the keys from settings on each use so tests and rotation can change them."""

    _cache: dict[str, bytes] = {}

    def _fernet(self, raw: str) -> FernetBytes:
        if raw not in self._cache:
            self._cache[raw] = _derive(raw)
        return FernetBytes(self._cache[raw])

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet(settings.BYOI_ENCRYPTION_KEY).encrypt(data)

    def decrypt(self, data: bytes, ttl=None) -> bytes:
        keys = [settings.BYOI_ENCRYPTION_KEY, *settings.BYOI_ENCRYPTION_OLD_KEYS]
        for raw in keys:
            try:
                return self._fernet(raw).decrypt(data, ttl)
            except InvalidToken:
                continue
        raise InvalidToken("No BYOI encryption key (current or old) decrypts this value.")

    def is_current(self, data: bytes) -> bool:
        try:
            self._fernet(settings.BYOI_ENCRYPTION_KEY).decrypt(data)
            return True
        except InvalidToken:
            return False


def install_key_ring() -> None:
    from django.apps import apps
    from django_cryptography.fields import EncryptedMixin

    ring = KeyRing()
    for model in apps.get_app_config("byoi").get_models():
        for f in model._meta.get_fields():
            if isinstance(f, EncryptedMixin):
                f._fernet = ring

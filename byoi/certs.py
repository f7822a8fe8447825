"""A customer's own CA certificate (the "CA certificate (PEM)" of a PostgreSQL or FalkorDB component).

It is stored encrypted with the secrets and never shown again: pages show `describe()` (subject and expiry).
TLS uses it instead of WizChat's trusted CAs: `ssl_context()` for the Test Connection handshake and FalkorDB
(as `cadata`), `root_file()` for libpq, which reads its root certificates from a file only."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import ssl
import stat
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
SHAPE = "-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----"


def load(pem: str) -> list[x509.Certificate]:
    """The certificates in `pem`, or ValueError saying what is wrong in words for the customer."""
    text = (pem or "").strip()
    blocks = _BLOCK.findall(text)
    if any("PRIVATE KEY" in kind for kind, _ in blocks) or "PRIVATE KEY-----" in text:
        raise ValueError("this is a private key. Paste only the CA certificate, never a key.")
    certificates = [body for kind, body in blocks if kind == "CERTIFICATE"]
    if not certificates:
        raise ValueError(f"paste the CA certificate in PEM form ({SHAPE}).")
    loaded = []
    for body in certificates:
        try:
            loaded.append(x509.load_pem_x509_certificate(
                f"-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----".encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(f"a certificate in it is damaged or incomplete ({SHAPE}); copy it again "
                             "from its file.") from None
    return loaded


def normalize(pem: str) -> str:
    """The certificates of `pem` alone, re-encoded (text around them dropped); ValueError as load()."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in load(pem))


def _subject(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return f"CN={names[0].value}" if names else certificate.subject.rfc4514_string() or "no subject"


def describe(pem: str) -> str:
    """"CN=Example Root CA, expires 2031-05-20" (and how many more), for pages; never the PEM itself."""
    try:
        certificates = load(pem)
    except ValueError:
        return "not a readable certificate"
    first = certificates[0]
    text = f"{_subject(first)}, expires {first.not_valid_after_utc:%Y-%m-%d}"
    more = len(certificates) - 1
    return text + (f" (and {more} more certificate{'s' if more > 1 else ''})" if more else "")


def problem(pem: str, now: dt.datetime | None = None) -> str | None:
    """Why this CA certificate cannot verify anything (unreadable, expired, not yet valid), else None.

    With several certificates, one that is still valid is enough."""
    try:
        certificates = load(pem)
    except ValueError as error:
        return f"Your CA certificate cannot be used: {error}"
    now = now or dt.datetime.now(dt.UTC)
    current = [c for c in certificates if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    if current:
        return None
    first = certificates[0]
    if first.not_valid_after_utc < now:
        return (f"Your CA certificate ({_subject(first)}) expired on {first.not_valid_after_utc:%Y-%m-%d}: "
                "paste the CA's current certificate.")
    return (f"Your CA certificate ({_subject(first)}) is not valid before "
            f"{first.not_valid_before_utc:%Y-%m-%d}: check the clock of whoever issued it, or paste the current one.")


def ssl_context(pem: str, *, check_hostname: bool) -> ssl.SSLContext:
    """A client context that trusts exactly the certificates of `pem` (ValueError if it cannot)."""
    context = ssl.create_default_context(cadata=normalize(pem))
    context.check_hostname = check_hostname
    return context


_files_lock = threading.Lock()
_folder_path: Path | None = None


def _folder() -> Path:
    """A folder only this user can read, for libpq's root certificate files."""
    global _folder_path
    if _folder_path is None or not _folder_path.is_dir():
        folder = Path(tempfile.gettempdir()) / f"wizchat-ca-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            # Someone else's folder (or a link) under a shared /tmp: use a fresh private one instead.
            folder = Path(tempfile.mkdtemp(prefix="wizchat-ca-"))
        _folder_path = folder
    return _folder_path


def root_file(pem: str) -> str:
    """The path of a file holding exactly these certificates (named by their digest, mode 0600), for libpq's
    `sslrootcert`. The same certificates always give the same file, so pools keyed by settings stay valid."""
    data = normalize(pem).encode("ascii")
    with _files_lock:
        path = _folder() / f"{hashlib.sha256(data).hexdigest()[:32]}.pem"
        if not path.exists() or path.read_bytes() != data:
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".ca-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
    return str(path)

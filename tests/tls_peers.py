"""TLS peers for the BYOI database/graph tests (session fixtures, imported by tests/conftest.py).

The embedded PostgreSQL and FalkorDB builds have no TLS, so, as a customer would, the tests put
- PgBouncer (client TLS required, SCRAM authentication via auth_query) in front of the customer PostgreSQL,
- stunnel (TLS) in front of the password-protected FalkorDB.
Both listen on 127.0.0.1 and on 127.0.0.2: the server certificate names "localhost" and 127.0.0.1 only, so
127.0.0.2 is the host-name-mismatch case. A second, unrelated CA stands for "the wrong CA".
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.peers import PEERS
from wizchat import embedded

AUTH_QUERY = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1"  # noqa: S608 - constant
__all__ = ["pgbouncer", "pytest_runtest_teardown", "stunnel_falkor", "tls_customer_db", "tls_falkor_settings",
           "tls_material", "trust_other_ca", "trust_test_ca"]

MISMATCH_HOST = "127.0.0.2"  # loopback, allowed by the test egress allow-list, not named in the certificate


@dataclass
class TlsMaterial:
    ca: Path  # the CA that signed the server certificate
    other_ca: Path  # an unrelated CA
    cert: Path
    key: Path


@dataclass
class TlsPeer:
    host: str  # a name in the certificate
    port: int
    mismatch_host: str  # an address that reaches the same listener but is not in the certificate
    process: subprocess.Popen


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _run_as() -> str | None:
    """The unprivileged user the TLS daemons run as when the tests run as root (both refuse/warn as root)."""
    return embedded._as_pg_user().get("user")


def _give(path: Path, user: str | None) -> None:
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="session")
def tls_material() -> TlsMaterial:
    folder = PEERS.root / "tls"
    folder.mkdir(exist_ok=True)
    ca_key, ca_cert = _ca("WizChat test CA")
    _, other_cert = _ca("Unrelated test CA")
    key, cert = _server_cert(ca_key, ca_cert)
    paths = TlsMaterial(ca=folder / "ca.pem", other_ca=folder / "other-ca.pem", cert=folder / "server.pem",
                        key=folder / "server.key")
    paths.ca.write_bytes(_pem(ca_cert))
    paths.other_ca.write_bytes(_pem(other_cert))
    paths.cert.write_bytes(_pem(cert) + _pem(ca_cert))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    paths.key.chmod(0o600)
    user = _run_as()
    if user:  # folder is in the session's folder, which the user can traverse (tests/peers.py)
        for path in (folder, paths.cert, paths.key):
            _give(path, user)
    return paths


def _start(cmd: list[str], log: Path, port: int, name: str, user: str | None) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 - owned by the child for its life
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                            **({"user": user} if user else {}))
    try:
        embedded.wait_for_port("127.0.0.1", port, 30, proc, name)
        embedded.wait_for_port(MISMATCH_HOST, port, 10, proc, name)
    except RuntimeError as error:
        embedded.stop_process(proc)
        raise RuntimeError(f"{error}\n{log.read_text()[-2000:]}") from None
    return proc


@pytest.fixture(scope="session")
def pgbouncer(tls_material) -> TlsPeer:
    """PgBouncer with client TLS required and SCRAM (secrets looked up in pg_shadow by auth_query) in front
    of the customer PostgreSQL; any database, session pooling."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    folder = PEERS.root / "pgbouncer"
    folder.mkdir(exist_ok=True)
    port = embedded.free_port()
    admin = PEERS.customer_pg
    users = folder / "userlist.txt"
    users.write_text(f'"postgres" "{admin.password}"\n')
    conf = folder / "pgbouncer.ini"
    conf.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={admin.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1,{MISMATCH_HOST}\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {users}\n"
        "auth_user = postgres\n"
        f"auth_query = {AUTH_QUERY}\n"
        "pool_mode = session\n"
        "client_tls_sslmode = require\n"
        f"client_tls_cert_file = {tls_material.cert}\n"
        f"client_tls_key_file = {tls_material.key}\n"
        "server_tls_sslmode = disable\n"
        "ignore_startup_parameters = extra_float_digits\n"
        "max_client_conn = 200\n"
        "default_pool_size = 10\n"
        "server_login_retry = 1\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    for path in (users, conf):
        path.chmod(0o600)
    user = _run_as()
    for path in (folder, users, conf):
        _give(path, user)
    proc = _start([binary, str(conf)], folder / "stdout.log", port, "PgBouncer", user)
    yield TlsPeer(host="localhost", port=port, mismatch_host=MISMATCH_HOST, process=proc)
    embedded.stop_process(proc)


@pytest.fixture(scope="session")
def stunnel_falkor(tls_material) -> TlsPeer:
    """stunnel terminating TLS in front of the session's password-protected FalkorDB."""
    binary = shutil.which("stunnel4") or shutil.which("stunnel") or "/usr/bin/stunnel4"
    folder = PEERS.root / "stunnel"
    folder.mkdir(exist_ok=True)
    port = embedded.free_port()
    user = _run_as()
    conf = folder / "stunnel.conf"
    conf.write_text(
        "foreground = yes\n"
        "pid =\n"
        "debug = notice\n"
        + (f"setuid = {user}\nsetgid = {grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name}\n" if user else "")
        + f"[falkordb]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{PEERS.falkor.port}\n"
        f"cert = {tls_material.cert}\nkey = {tls_material.key}\n"
        f"[falkordb-mismatch]\naccept = {MISMATCH_HOST}:{port}\nconnect = 127.0.0.1:{PEERS.falkor.port}\n"
        f"cert = {tls_material.cert}\nkey = {tls_material.key}\n"
    )
    conf.chmod(0o600)
    proc = _start([binary, str(conf)], folder / "stunnel.log", port, "stunnel", None)
    yield TlsPeer(host="localhost", port=port, mismatch_host=MISMATCH_HOST, process=proc)
    embedded.stop_process(proc)


@pytest.fixture
def trust_test_ca(settings, tls_material):
    """Operators' BYOI_CA_BUNDLE pointing at the CA that signed the test servers' certificates."""
    settings.BYOI_CA_BUNDLE = str(tls_material.ca)
    return tls_material.ca


@pytest.fixture
def trust_other_ca(settings, tls_material):
    settings.BYOI_CA_BUNDLE = str(tls_material.other_ca)
    return tls_material.other_ca


@pytest.fixture
def tls_customer_db(customer_db, pgbouncer):
    """customer_db's settings, reached through PgBouncer with TLS (SSL Mode require)."""
    return {**customer_db, "host": pgbouncer.host, "port": pgbouncer.port, "ssl_mode": "require"}


@pytest.fixture
def tls_falkor_settings(stunnel_falkor):
    return {"host": stunnel_falkor.host, "port": stunnel_falkor.port, "password": PEERS.falkor.password, "ssl": True}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Before the last test's teardown runs the session finalizers (pytest-django drops the test database
    there), close the backends' cached pools: their idle connections would keep the database in use."""
    if nextitem is None:
        from byoi.backends import graph, pg

        pg.pool_close()
        graph.client_close()

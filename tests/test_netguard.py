"""The egress guard: blocked addresses are refused before any socket connects, failures are classified.

No test here sends a packet beyond loopback: the `connects` fixture records every socket connect and refuses
(without connecting) any address outside 127.0.0.0/8, so even a broken guard could not reach the network."""

import datetime
import ipaddress
import socket
import ssl
import threading

import psycopg
import pytest
import redis

from byoi import netguard
from byoi.backends.base import BackendError
from byoi.checks import check_run
from byoi.checks.net import tls_handshake
from byoi.errors import classify
from tests.openai_server import OpenAIServer
from tests.peers import PEERS
from wizchat import embedded


@pytest.fixture
def connects(monkeypatch):
    calls = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def loopback_only(address):
        calls.append(address)
        if not ipaddress.ip_address(address[0].split("%", 1)[0]).is_loopback or address[0] == "::1":
            raise ConnectionRefusedError("test: non-loopback connect blocked by the test itself")

    def connect(self, address):
        loopback_only(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        loopback_only(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return calls


@pytest.fixture
def no_allow_list(settings):
    settings.EGRESS_ALLOWED_NETWORKS = []


def closed_port() -> int:
    return embedded.free_port()  # bound then released: nothing listens there


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.1", "::1", "[::1]", "fd00:ec2::254",
                                     "::ffff:10.0.0.1", "0.0.0.0", "100.64.0.1", "224.0.0.1"])  # noqa: S104
def test_it_refuses_blocked_addresses_before_any_socket_connects(address, connects, no_allow_list):
    with pytest.raises(BackendError) as caught:
        netguard.connect_tcp(address, 80, timeout=2)
    assert caught.value.code == "blocked_address"
    assert connects == []


def test_it_refuses_a_name_that_resolves_to_loopback(connects, no_allow_list):
    with pytest.raises(BackendError) as caught:
        netguard.connect_tcp("localhost", 80, timeout=2)
    assert caught.value.code == "blocked_address"
    # The refusal never says what the name resolves to (nor which kind of network).
    assert "localhost" in caught.value.message and "127.0.0.1" not in caught.value.message
    assert "loopback" not in caught.value.message
    assert connects == []


def test_it_refuses_the_metadata_address_even_through_an_http_client(connects, no_allow_list):
    client = netguard.http_client("http://169.254.169.254/latest/meta-data/", timeout_connect=2, timeout_read=2)
    with pytest.raises(BackendError) as caught:
        client.get("/")
    assert caught.value.code == "blocked_address"
    assert connects == []


def test_it_refuses_a_blocked_llm_endpoint_in_test_connection_before_connecting(connects, no_allow_list):
    results = check_run("llm", {"endpoint": "http://10.0.0.1:8000/v1", "api_key": "sk-secret-abcdef123456",
                                "model": "gpt-4o"})
    assert [(r.name, r.status, r.code) for r in results][:2] == [("address", "failed", "blocked_address"),
                                                                  ("tcp", "skipped", "")]
    assert connects == []


def test_it_allows_loopback_when_the_operator_allow_lists_it(settings):
    settings.EGRESS_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    assert netguard.resolve_allowed("localhost", 80) == ["127.0.0.1"]


def test_it_checks_literal_addresses_without_dns(monkeypatch, settings):
    settings.EGRESS_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]

    def no_dns(*args, **kwargs):
        raise AssertionError("DNS lookup for a literal address")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert netguard.resolve_allowed("127.0.0.5", 80) == ["127.0.0.5"]


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f000001", "0x7f.1", "127.1", "017700000001"])
def test_it_refuses_legacy_spellings_of_loopback_without_dns(spelling, monkeypatch, no_allow_list):
    def no_dns(*args, **kwargs):
        raise AssertionError("DNS lookup for a literal address")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(BackendError) as caught:
        netguard.resolve_allowed(spelling, 80)
    assert caught.value.code == "blocked_address"


def test_it_reports_an_unresolvable_name_as_dns(connects):
    # A label longer than 63 characters fails in the IDNA encoder, before any resolver query is sent.
    with pytest.raises(BackendError) as caught:
        netguard.connect_tcp("a" * 64 + ".example.com", 443, timeout=2)
    assert caught.value.code == "dns"
    assert connects == []


def test_it_reports_a_closed_port_as_refused():
    with pytest.raises(BackendError) as caught:
        netguard.connect_tcp("127.0.0.1", closed_port(), timeout=2)
    assert caught.value.code == "refused"


def test_it_connects_to_an_allowed_listening_port():
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = netguard.connect_tcp("127.0.0.1", server.getsockname()[1], timeout=2)
        assert sock.getpeername() == server.getsockname()
        sock.close()


def test_it_rejects_endpoints_that_are_not_http():
    with pytest.raises(BackendError) as caught:
        netguard.http_client("ftp://example.com/v1", timeout_connect=1, timeout_read=1)
    assert caught.value.code == "config"


def test_it_keeps_the_host_name_in_the_host_header_while_connecting_to_the_pinned_address(openai_server):
    client = netguard.http_client(f"http://localhost:{openai_server.port}/v1", timeout_connect=2, timeout_read=2)
    client.get("/models")
    assert openai_server.requests[0].headers["Host"] == f"localhost:{openai_server.port}"


def test_it_does_not_follow_redirects(openai_server):
    target = type(openai_server)().start()
    try:
        openai_server.mode, openai_server.redirect_to = "redirect", target.base_url
        client = netguard.http_client(openai_server.base_url, timeout_connect=2, timeout_read=2)
        with pytest.raises(BackendError) as caught:
            client.get(openai_server.base_url + "/models")
        assert caught.value.code == "protocol"
        assert target.requests == []
    finally:
        target.stop()


# -- TLS ----------------------------------------------------------------------------------------------------

def make_certificate(tmp_path, name: str, issuer=None):
    """(cert path, key path, (cert, key)) for `name`; self-signed CA when issuer is None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, (cert, key)


@pytest.fixture
def self_signed_tls_server(tmp_path):
    """A TLS server on 127.0.0.1 whose certificate no trusted CA signed."""
    cert_path, key_path, _ = make_certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


@pytest.fixture
def https_openai_server(tmp_path, monkeypatch):
    """The OpenAI-protocol server over HTTPS with a certificate for "localhost" from a CA the client trusts
    (SSL_CERT_FILE, as an operator with a private CA would set it)."""
    ca_path, _, ca = make_certificate(tmp_path, "WizChat Test CA")
    cert_path, key_path, _ = make_certificate(tmp_path, "localhost", issuer=ca)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = OpenAIServer(url_host="localhost", tls=context).start()
    yield server
    server.stop()


def test_it_reports_an_untrusted_certificate_as_tls(self_signed_tls_server):
    sock = netguard.connect_tcp("localhost", self_signed_tls_server, 2)
    with pytest.raises(BackendError) as caught:
        tls_handshake(sock, "localhost", netguard.ssl_context())
    assert caught.value.code == "tls"
    assert "certificate" in caught.value.message


def test_it_fails_the_llm_tls_step_for_an_untrusted_certificate(self_signed_tls_server):
    results = check_run("llm", {"endpoint": f"https://localhost:{self_signed_tls_server}/v1",
                                "api_key": "sk-x", "model": "gpt-4o"})
    assert [(r.name, r.status, r.code) for r in results][:3] == [("address", "ok", ""), ("tcp", "ok", ""),
                                                                  ("tls", "failed", "tls")]


# -- classification of database errors (real peers) ----------------------------------------------------------

def test_it_classifies_a_wrong_database_password_as_auth():
    pg = PEERS.customer_pg
    secret = "wrong-password-8c1f"
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(host="127.0.0.1", port=pg.port, dbname="postgres", user="postgres", password=secret,
                        connect_timeout=5)
    error = classify(caught.value, host="127.0.0.1", port=pg.port)
    assert error.code == "auth"
    assert secret not in error.message


def test_it_classifies_a_closed_database_port_as_refused():
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(host="127.0.0.1", port=closed_port(), dbname="x", user="x", password="y", connect_timeout=5)
    assert classify(caught.value).code == "refused"


def test_it_classifies_a_wrong_falkordb_password_as_auth():
    falkor = PEERS.falkor
    client = redis.Redis(host="127.0.0.1", port=falkor.port, password="wrong-password-1d2e", socket_timeout=5)
    with pytest.raises(redis.RedisError) as caught:
        client.ping()
    error = classify(caught.value)
    assert error.code == "auth"
    assert "wrong-password-1d2e" not in error.message


def test_it_never_copies_library_messages_that_hold_credentials():
    error = classify(OSError("connect to https://user:sk-live-abc@example.com failed"))
    assert "sk-live-abc" not in error.message


def test_it_verifies_tls_for_the_host_name_while_connecting_to_the_pinned_address(https_openai_server):
    results = check_run("llm", https_openai_server.llm_settings())
    assert [(r.name, r.status) for r in results] == [("address", "ok"), ("tcp", "ok"), ("tls", "ok"),
                                                     ("auth", "ok"), ("operation", "ok")]


def test_it_verifies_the_certificate_against_the_endpoints_host_name(https_openai_server):
    settings = https_openai_server.llm_settings()
    settings["endpoint"] = settings["endpoint"].replace("localhost", "127.0.0.1")  # certificate is for localhost
    results = check_run("llm", settings)
    assert [(r.name, r.status, r.code) for r in results][2] == ("tls", "failed", "tls")


@pytest.fixture
def private_ca_openai_server(tls_material, monkeypatch):
    """The OpenAI-protocol server over HTTPS with a certificate from the test CA, which only BYOI_CA_BUNDLE names
    (no SSL_CERT_FILE): a customer endpoint signed by the customer's private CA."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_material.cert, tls_material.key)
    server = OpenAIServer(url_host="localhost", tls=context).start()
    yield server
    server.stop()


def test_it_trusts_the_operators_ca_bundle_for_https_endpoints(private_ca_openai_server, trust_test_ca):
    for kind, values in (("llm", private_ca_openai_server.llm_settings()),
                         ("embeddings", private_ca_openai_server.embeddings_settings())):
        results = check_run(kind, values)
        assert [(r.name, r.status) for r in results] == [("address", "ok"), ("tcp", "ok"), ("tls", "ok"),
                                                         ("auth", "ok"), ("operation", "ok")], kind


def test_it_refuses_an_https_endpoint_signed_by_a_ca_nobody_trusts(private_ca_openai_server, trust_other_ca):
    results = check_run("llm", private_ca_openai_server.llm_settings())
    assert [(r.name, r.status, r.code) for r in results][2] == ("tls", "failed", "tls")
    assert "certificate" in results[2].message


def test_it_says_when_the_operators_ca_bundle_cannot_be_read(private_ca_openai_server, settings, tmp_path):
    settings.BYOI_CA_BUNDLE = str(tmp_path / "missing-ca.pem")
    results = check_run("llm", private_ca_openai_server.llm_settings())
    failed = [r for r in results if r.status == "failed"]
    assert [(r.name, r.code) for r in failed] == [("tls", "config")]
    assert "BYOI_CA_BUNDLE" in failed[0].message
    assert not private_ca_openai_server.requests

"""A customer's own CA certificate per PostgreSQL/FalkorDB component, against the TLS peers (tests/tls_peers.py:
PgBouncer with TLS in front of the customer PostgreSQL, stunnel in front of FalkorDB; their certificates are
signed by the session's test CA). WizChat's own BYOI_CA_BUNDLE is set to an unrelated CA, so only the
component's CA certificate can make verification pass."""

import datetime as dt
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import connection
from django.urls import reverse

from byoi import certs, services
from byoi.backends.base import Chunk
from byoi.backends.graph import FalkorGraph
from byoi.backends.vector_store import PgVectorStore
from byoi.checks import check_run
from byoi.envvars import env_to_settings, settings_to_env
from byoi.models import BYOIComponent


def failure(results):
    return next(r for r in results if r.status == "failed")


def a_ca(days_valid: int, name: str = "Customer test CA") -> str:
    """A self-signed CA certificate (PEM) that expires in `days_valid` days (negative: already expired)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now + dt.timedelta(days=days_valid))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def customer_ca(tls_material, trust_other_ca) -> str:
    """The CA that signed the TLS peers' certificates, as the customer pastes it; WizChat trusts another one."""
    return tls_material.ca.read_text()


@pytest.fixture
def strict_db(tls_customer_db):
    return {**tls_customer_db, "ssl_mode": "verify-full"}


# --- PostgreSQL ---------------------------------------------------------------------------------------------

def test_it_passes_verify_full_with_the_customers_ca(strict_db, customer_ca):
    results = check_run("vector_store", {**strict_db, "ca_cert": customer_ca})

    assert [r.status for r in results] == ["ok"] * len(results)
    assert "your CA certificate (CN=WizChat test CA" in next(r for r in results if r.name == "tls").message


def test_it_fails_verify_full_without_the_customers_ca(strict_db, customer_ca):
    results = check_run("vector_store", strict_db)

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_trusts_only_the_customers_ca_when_one_is_given(strict_db, trust_test_ca, tls_material):
    results = check_run("vector_store", {**strict_db, "ca_cert": tls_material.other_ca.read_text()})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")
    assert "your CA certificate (CN=Unrelated test CA" in failure(results).message


def test_it_accepts_a_name_mismatch_in_verify_ca_with_the_customers_ca(strict_db, customer_ca, pgbouncer):
    results = check_run("conversations", {**strict_db, "ssl_mode": "verify-ca", "host": pgbouncer.mismatch_host,
                                          "ca_cert": customer_ca})

    assert [r.status for r in results] == ["ok"] * len(results)


def test_it_stores_and_searches_vectors_through_libpq_with_the_customers_ca(strict_db, customer_ca):
    store = PgVectorStore({**strict_db, "ca_cert": customer_ca})
    bot = uuid.uuid4()
    try:
        store.provision(bot, 3)
        store.upsert(bot, [Chunk("d:0", "d", 0, "hello", [1.0, 0.0, 0.0])])
        hits = store.search(bot, [1.0, 0.0, 0.0], k=1)
    finally:
        store.close()

    assert [h.chunk_id for h in hits] == ["d:0"]


def test_it_says_the_customers_ca_has_expired_at_the_tls_step(strict_db, trust_other_ca):
    results = check_run("vector_store", {**strict_db, "ca_cert": a_ca(days_valid=-3)})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")
    assert "expired on" in failure(results).message


def test_it_says_the_customers_ca_is_damaged_at_the_tls_step(strict_db, trust_other_ca):
    damaged = "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"

    results = check_run("vector_store", {**strict_db, "ca_cert": damaged})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")
    assert "damaged or incomplete" in failure(results).message


def test_it_says_the_ca_is_used_only_by_the_verifying_modes(tls_customer_db, customer_ca):
    results = check_run("vector_store", {**tls_customer_db, "ca_cert": customer_ca})

    assert "verify-ca or verify-full only" in next(r for r in results if r.name == "tls").message


# --- FalkorDB -----------------------------------------------------------------------------------------------

def test_it_passes_falkordb_ssl_with_the_customers_ca(tls_falkor_settings, customer_ca):
    results = check_run("graph", {**tls_falkor_settings, "ca_cert": customer_ca})

    assert [r.status for r in results] == ["ok"] * len(results)


def test_it_fails_falkordb_ssl_without_the_customers_ca(tls_falkor_settings, customer_ca):
    results = check_run("graph", tls_falkor_settings)

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_writes_and_reads_a_graph_with_the_customers_ca(tls_falkor_settings, customer_ca):
    graph = FalkorGraph({**tls_falkor_settings, "ca_cert": customer_ca})
    bot = uuid.uuid4()
    try:
        graph.provision(bot)
        assert graph.count(bot) == {"nodes": 0, "relationships": 0}
    finally:
        graph.delete_graph(bot)
        graph.close()


# --- storing it ---------------------------------------------------------------------------------------------

@pytest.fixture
def db_values(customer_db):
    return {k: v for k, v in customer_db.items() if k != "password"}


def test_it_stores_the_certificate_encrypted_with_the_secrets(chatbot, db_values, customer_db, tls_material):
    component = services.component_save(chatbot, "vector_store", values=db_values,
                                        secrets={"password": customer_db["password"],
                                                 "ca_cert": tls_material.ca.read_text()})

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_values::text, values::text FROM byoi_byoicomponent WHERE id = %s",
                       [component.pk])
        raw = cursor.fetchone()
    assert BYOIComponent.objects.get(pk=component.pk).secrets["ca_cert"] == certs.normalize(tls_material.ca.read_text())
    assert "CERTIFICATE" not in raw[0] and "CERTIFICATE" not in raw[1]


def test_it_refuses_a_private_key_pasted_as_the_certificate(db, db_values):
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    with pytest.raises(services.ComponentInvalid) as caught:
        services.component_validate("vector_store", db_values, {"password": "p", "ca_cert": key}, None)

    assert "never a key" in caught.value.errors["ca_cert"]


def test_it_refuses_text_that_is_not_a_certificate(db, db_values):
    with pytest.raises(services.ComponentInvalid) as caught:
        services.component_validate("vector_store", db_values, {"password": "p", "ca_cert": "my CA"}, None)

    assert "BEGIN CERTIFICATE" in caught.value.errors["ca_cert"]


def test_it_shows_the_subject_and_expiry_but_never_the_certificate(owner_client, chatbot, db_values, customer_db,
                                                                    tls_material):
    pem = tls_material.ca.read_text()
    services.byoi_set_enabled(chatbot, True)
    services.component_save(chatbot, "vector_store", values=db_values,
                            secrets={"password": customer_db["password"], "ca_cert": pem})

    page = owner_client.get(reverse("byoi:settings", args=[chatbot.id])).content.decode()

    assert "Stored: CN=WizChat test CA, expires" in page
    assert "END CERTIFICATE" not in page and pem.splitlines()[1] not in page  # the field's placeholder says BEGIN


def test_it_keeps_the_certificate_when_the_host_changes(chatbot, db_values, customer_db, tls_material):
    services.component_save(chatbot, "vector_store", values=db_values,
                            secrets={"password": customer_db["password"], "ca_cert": tls_material.ca.read_text()})

    component = services.component_save(chatbot, "vector_store", values={**db_values, "host": "db2.example.com"},
                                        secrets={"password": "new-password-for-db2"})

    assert set(component.secrets) == {"password", "ca_cert"}


def test_it_removes_the_certificate_when_asked(owner_client, chatbot, db_values, customer_db, tls_material):
    services.byoi_set_enabled(chatbot, True)
    services.component_save(chatbot, "vector_store", values=db_values,
                            secrets={"password": customer_db["password"], "ca_cert": tls_material.ca.read_text()})
    form = {"byoi-enabled": "on", "vector_store-enabled": "on", "vector_store-ca_cert_remove": "on",
            **{f"vector_store-{k}": v for k, v in db_values.items()}}

    owner_client.post(reverse("byoi:settings", args=[chatbot.id]), form)

    assert set(BYOIComponent.objects.get(chatbot=chatbot, kind="vector_store").secrets) == {"password"}


def test_it_carries_the_certificate_through_the_custom_variables_on_one_line(tls_material):
    settings = {"host": "db.example.com", "port": 5432, "database": "v", "username": "u", "password": "p",
                "ssl_mode": "verify-full", "ca_cert": certs.normalize(tls_material.ca.read_text())}

    env = settings_to_env("vector_store", settings)

    assert "\n" not in env["CUSTOM_PGVECTOR_CA_CERT"]
    assert env_to_settings(env)["vector_store"] == settings


def test_it_describes_a_bundle_by_its_first_certificate_and_how_many_more():
    assert certs.describe(a_ca(30, "First CA") + a_ca(30, "Second CA")).startswith("CN=First CA, expires ")
    assert certs.describe(a_ca(30, "First CA") + a_ca(30, "Second CA")).endswith("(and 1 more certificate)")

"""Test Connection for the vector store, against the real customer PostgreSQL (plain and behind PgBouncer
with TLS + SCRAM)."""

import uuid

import psycopg
import pytest
from psycopg import sql

from byoi.checks import check_run
from tests.peers import PEERS
from wizchat import embedded


def outcome(results):
    """{step: status} plus the failing step's code and message."""
    failed = next((r for r in results if r.status == "failed"), None)
    return [(r.name, r.status) for r in results], failed


def failure(results):
    return next(r for r in results if r.status == "failed")


@pytest.fixture
def make_database():
    """A database on the customer server with a chosen owner, role privileges and extensions."""
    made = []
    admin = PEERS.customer_pg

    def make(*, owner_is_role: bool, vector: bool):
        name = f"chk_{uuid.uuid4().hex[:10]}"
        role, password = f"r_{name}", embedded.new_password()
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
            owner = sql.Identifier(role if owner_is_role else "postgres")
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), owner))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(name), sql.Identifier(role)))
        if vector:
            with psycopg.connect(admin.dsn(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION vector")
        made.append((name, role))
        return {"host": "127.0.0.1", "port": admin.port, "database": name, "username": role, "password": password,
                "ssl_mode": "disable"}

    yield make
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        for name, role in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def tables_like(database: str, pattern: str) -> list[str]:
    with psycopg.connect(PEERS.customer_pg.dsn(database)) as conn:
        return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", [pattern])]


def test_it_passes_every_step_against_a_plain_customer_database(customer_db):
    results = check_run("vector_store", customer_db)

    assert [(r.name, r.status) for r in results] == [
        ("address", "ok"), ("tcp", "ok"), ("tls", "warning"), ("auth", "ok"), ("version", "ok"), ("extension", "ok"),
        ("permissions", "ok"), ("operation", "ok")]


def test_it_reports_the_pgvector_version(customer_db):
    results = check_run("vector_store", customer_db)

    assert "pgvector 0." in next(r for r in results if r.name == "extension").message


def test_it_removes_its_probe_table(customer_db):
    check_run("vector_store", customer_db)

    assert tables_like(customer_db["database"], "wizchat_probe_%") == []


def test_it_passes_with_ssl_require_through_pgbouncer(tls_customer_db):
    results = check_run("vector_store", tls_customer_db)

    assert [r.status for r in results] == ["ok"] * 8


def test_it_passes_verify_full_with_the_operators_ca(tls_customer_db, trust_test_ca):
    results = check_run("vector_store", {**tls_customer_db, "ssl_mode": "verify-full"})

    assert [r.status for r in results] == ["ok"] * 8


def test_it_fails_tls_when_the_certificate_is_signed_by_another_ca(tls_customer_db, trust_other_ca):
    results = check_run("vector_store", {**tls_customer_db, "ssl_mode": "verify-full"})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_fails_tls_when_the_certificate_does_not_name_the_host(tls_customer_db, trust_test_ca, pgbouncer):
    settings = {**tls_customer_db, "ssl_mode": "verify-full", "host": pgbouncer.mismatch_host}

    results = check_run("vector_store", settings)

    assert (failure(results).name, failure(results).code) == ("tls", "tls")
    assert pgbouncer.mismatch_host in failure(results).message


def test_it_accepts_a_host_name_mismatch_in_verify_ca(tls_customer_db, trust_test_ca, pgbouncer):
    settings = {**tls_customer_db, "ssl_mode": "verify-ca", "host": pgbouncer.mismatch_host}

    results = check_run("vector_store", settings)

    assert [r.status for r in results] == ["ok"] * 8


def test_it_fails_verify_full_when_no_ca_is_configured(tls_customer_db, settings):
    settings.BYOI_CA_BUNDLE = ""

    results = check_run("vector_store", {**tls_customer_db, "ssl_mode": "verify-full"})

    assert failure(results).code == "tls"


def test_it_fails_auth_with_a_wrong_password_through_pgbouncer(tls_customer_db):
    results = check_run("vector_store", {**tls_customer_db, "password": "Wr0ng-secret-value"})

    assert (failure(results).name, failure(results).code) == ("auth", "auth")
    assert all("Wr0ng-secret-value" not in r.message for r in results)


def test_it_says_ssl_is_required_when_ssl_mode_is_disable_against_a_tls_only_server(tls_customer_db):
    results = check_run("vector_store", {**tls_customer_db, "ssl_mode": "disable"})

    assert (failure(results).name, failure(results).code) == ("auth", "tls")
    assert "requires SSL" in failure(results).message


def test_it_fails_auth_with_a_wrong_password(customer_db):
    results = check_run("vector_store", {**customer_db, "password": "Wr0ng-secret-value"})

    assert (failure(results).name, failure(results).code) == ("auth", "auth")


def test_it_names_an_unknown_database(customer_db):
    results = check_run("vector_store", {**customer_db, "database": "no_such_database"})

    assert (failure(results).name, failure(results).code) == ("auth", "config")
    assert "no_such_database" in failure(results).message


def test_it_reports_a_closed_port_as_refused(customer_db):
    results = check_run("vector_store", {**customer_db, "port": embedded.free_port()})

    assert (failure(results).name, failure(results).code) == ("tcp", "refused")


def test_it_refuses_a_private_address_and_skips_the_rest(customer_db):
    results = check_run("vector_store", {**customer_db, "host": "10.20.30.40"})

    assert [(r.name, r.status) for r in results][:2] == [("address", "failed"), ("tcp", "skipped")]
    assert results[0].code == "blocked_address"


def test_it_reports_ssl_unsupported_when_the_server_has_no_tls(customer_db):
    results = check_run("vector_store", {**customer_db, "ssl_mode": "require"})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_reports_permission_when_the_user_cannot_create_tables(make_database):
    results = check_run("vector_store", make_database(owner_is_role=False, vector=True))

    assert (failure(results).name, failure(results).code) == ("permissions", "permission")


def test_it_reports_extension_missing_when_pgvector_is_absent_and_not_creatable(make_database):
    results = check_run("vector_store", make_database(owner_is_role=True, vector=False))

    assert (failure(results).name, failure(results).code) == ("extension", "extension_missing")


def test_it_reports_a_server_that_is_not_postgresql_as_protocol(customer_db):
    results = check_run("vector_store", {**customer_db, "port": PEERS.falkor.port, "ssl_mode": "require"})

    assert (failure(results).name, failure(results).code) == ("tls", "protocol")

"""Test Connection for the conversations database, against the real customer PostgreSQL (plain and behind
PgBouncer with TLS + SCRAM)."""

import uuid

import psycopg
import pytest
from psycopg import sql

from byoi.checks import check_run
from tests.peers import PEERS
from wizchat import embedded


def failure(results):
    return next(r for r in results if r.status == "failed")


def admin_query(database, query, params=()):
    with psycopg.connect(PEERS.customer_pg.dsn(database)) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def read_only_db():
    """A database owned by the admin where the role may connect but not create tables."""
    admin = PEERS.customer_pg
    name = f"ro_{uuid.uuid4().hex[:10]}"
    role, password = f"r_{name}", embedded.new_password()
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(name), sql.Identifier(role)))
    yield {"host": "127.0.0.1", "port": admin.port, "database": name, "username": role, "password": password,
           "ssl_mode": "disable"}
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_it_passes_every_step_against_a_plain_customer_database(customer_db):
    results = check_run("conversations", customer_db)

    assert [(r.name, r.status) for r in results] == [
        ("address", "ok"), ("tcp", "ok"), ("tls", "warning"), ("auth", "ok"), ("version", "ok"), ("permissions", "ok"),
        ("operation", "ok")]


def test_it_removes_its_probe_table(customer_db):
    check_run("conversations", customer_db)

    assert admin_query(customer_db["database"], "SELECT tablename FROM pg_tables WHERE tablename LIKE 'wizchat_probe%%'") == []


def test_it_removes_its_schema_version_row(customer_db):
    check_run("conversations", customer_db)

    assert admin_query(customer_db["database"], "SELECT count(*) FROM wizchat_schema_version") == [(0,)]


def test_it_passes_with_ssl_require_through_pgbouncer(tls_customer_db):
    results = check_run("conversations", tls_customer_db)

    assert [r.status for r in results] == ["ok"] * 7


def test_it_passes_verify_full_with_the_operators_ca(tls_customer_db, trust_test_ca):
    results = check_run("conversations", {**tls_customer_db, "ssl_mode": "verify-full"})

    assert [r.status for r in results] == ["ok"] * 7


def test_it_fails_tls_when_the_certificate_is_signed_by_another_ca(tls_customer_db, trust_other_ca):
    results = check_run("conversations", {**tls_customer_db, "ssl_mode": "verify-ca"})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_fails_auth_with_a_wrong_password(tls_customer_db):
    results = check_run("conversations", {**tls_customer_db, "password": "Wr0ng-secret-value"})

    assert (failure(results).name, failure(results).code) == ("auth", "auth")
    assert all("Wr0ng-secret-value" not in r.message for r in results)


def test_it_reports_permission_when_the_user_cannot_create_tables(read_only_db):
    results = check_run("conversations", read_only_db)

    assert (failure(results).name, failure(results).code) == ("permissions", "permission")


def test_it_needs_no_pgvector(read_only_db):
    results = check_run("conversations", read_only_db)

    assert next(r for r in results if r.name == "version").status == "ok"


def test_it_leaves_the_chatbots_tables_alone(customer_db):
    from byoi.backends.base import Message
    from byoi.backends.conversation_store import PgConversationStore

    store = PgConversationStore(customer_db)
    bot = uuid.uuid4()
    store.append(bot, Message("m1", "c1", "user", "hello", ""))

    check_run("conversations", customer_db)

    assert store.count(bot) == 1
    store.close()

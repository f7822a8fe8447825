"""Test Connection tells the truth, against the real customer PostgreSQL, PgBouncer with TLS and FalkorDB:
the vector store is probed with the chatbot's real dimensions; pgvector is never left installed by a test;
admin credentials, unencrypted connections and http:// endpoints are warnings (amber, the run still passes);
a FalkorDB that hides MODULE LIST gets "version unknown"; a refused address range says what to do without
saying what the name resolves to."""

import ipaddress
import socket
import uuid

import psycopg
import pytest
import redis
from django.urls import reverse
from psycopg import sql

from byoi import netguard, services
from byoi.backends.base import BackendError
from byoi.checks import check_run
from byoi.models import BYOIComponent
from tests.peers import PEERS
from wizchat import embedded


def step(results, name):
    return next(r for r in results if r.name == name)


def statuses(results) -> dict:
    return {r.name: r.status for r in results}


@pytest.fixture
def make_database():
    """A database on the customer server owned by a new role with the given attributes, pgvector optional."""
    made = []
    admin = PEERS.customer_pg

    def make(*, attributes: str = "", vector: bool = True) -> dict:
        name = f"truth_{uuid.uuid4().hex[:10]}"
        role, password = f"r_{name}", embedded.new_password()
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} " + attributes).format(
                sql.Identifier(role), sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
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


def pretend_pgvector(database: str, version: str) -> None:
    """Make the catalog report another pgvector version (the server's binaries only ship the newest)."""
    with psycopg.connect(PEERS.customer_pg.dsn(database), autocommit=True) as conn:
        conn.execute("UPDATE pg_extension SET extversion = %s WHERE extname = 'vector'", [version])


# --- the vector store's real dimensions ---------------------------------------------------------------------

def test_it_probes_with_the_chatbots_dimensions_as_halfvec_above_2000(customer_db):
    results = check_run("vector_store", {**customer_db, "embedding_dimensions": 3072})

    assert "3072-dimension vectors (halfvec)" in step(results, "extension").message
    assert "halfvec(3072)" in step(results, "operation").message
    assert step(results, "operation").status == "ok"


def test_it_fails_pgvector_too_old_for_halfvec_before_any_ingestion(make_database):
    database = make_database()
    pretend_pgvector(database["database"], "0.6.2")

    results = check_run("vector_store", {**database, "embedding_dimensions": 3072})

    failed = next(r for r in results if r.status == "failed")
    assert (failed.name, failed.code) == ("extension", "version")
    assert "0.7" in failed.message and "3072" in failed.message


def test_it_passes_the_same_old_pgvector_for_dimensions_it_can_index(make_database):
    database = make_database()
    pretend_pgvector(database["database"], "0.6.2")

    results = check_run("vector_store", {**database, "embedding_dimensions": 1536})

    assert statuses(results)["operation"] == "ok"


def test_it_refuses_dimensions_pgvector_cannot_index_at_all(customer_db):
    results = check_run("vector_store", {**customer_db, "embedding_dimensions": 8000})

    assert (step(results, "extension").status, step(results, "extension").code) == ("failed", "dimension_mismatch")


def test_it_tests_a_saved_vector_store_with_the_custom_embeddings_dimensions(chatbot, customer_db):
    services.byoi_set_enabled(chatbot, True)
    services.component_save(chatbot, "embeddings", values={"endpoint": "https://api.example.com/v1",
                                                           "model": "text-embedding-3-small", "dimensions": 1536},
                            secrets={"api_key": "k"})
    component = services.component_save(chatbot, "vector_store", values=customer_db, secrets={})

    test = services.connection_test_retest(component)

    assert test.values["embedding_dimensions"] == 1536


def test_it_tests_with_the_default_embeddings_dimensions_when_they_are_wizchats(chatbot, customer_db, settings):
    services.byoi_set_enabled(chatbot, True)
    component = services.component_save(chatbot, "vector_store", values=customer_db, secrets={})

    test = services.connection_test_retest(component)

    assert test.values["embedding_dimensions"] == settings.DEFAULT_EMBEDDINGS_DIMENSIONS


def test_it_tests_with_the_dimensions_typed_in_the_unsaved_form(owner_client, customer_db):
    form = {"byoi-enabled": "on", "embeddings-enabled": "on", "embeddings-dimensions": "1024",
            **{f"vector_store-{k}": v for k, v in customer_db.items()}}

    owner_client.post(reverse("byoi:test_start", args=["vector_store"]), form, HTTP_HX_REQUEST="true")

    assert services.ConnectionTest.objects.get(kind="vector_store").values["embedding_dimensions"] == 1024


def test_it_asks_the_vector_store_test_to_send_the_embeddings_dimensions(owner_client):
    page = owner_client.post(reverse("byoi:section", args=["vector_store"]),
                             {"byoi-enabled": "on", "vector_store-enabled": "on"}).content.decode()

    assert 'hx-include="#byoi-vector_store-fields, #id_byoi-enabled, #id_embeddings-enabled, ' \
           '#id_embeddings-dimensions"' in page


# --- pgvector is never left behind --------------------------------------------------------------------------

def vector_installed(database: str) -> bool:
    with psycopg.connect(PEERS.customer_pg.dsn(database)) as conn:
        return conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone()[0] == 1


def test_it_says_pgvector_will_be_installed_on_first_use_and_leaves_it_uninstalled(make_database):
    database = make_database(attributes="SUPERUSER", vector=False)

    results = check_run("vector_store", database)

    assert (step(results, "extension").status, step(results, "operation").status) == ("warning", "ok")
    assert "CREATE EXTENSION vector" in step(results, "extension").message
    assert not vector_installed(database["database"])


# --- admin credentials --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("attributes", "words"), [("SUPERUSER", "is a superuser"),
                                                   ("CREATEROLE", "can create roles"),
                                                   ("CREATEDB", "can create databases")])
def test_it_warns_about_admin_credentials_without_failing(make_database, attributes, words):
    results = check_run("vector_store", make_database(attributes=attributes))

    assert step(results, "permissions").status == "warning"
    assert words in step(results, "permissions").message and "admin credentials" in step(results, "permissions").message
    assert "failed" not in statuses(results).values()


def test_it_does_not_warn_about_a_dedicated_user(customer_db):
    assert step(check_run("conversations", customer_db), "permissions").status == "ok"


def test_a_passing_run_with_warnings_marks_the_component_ok(chatbot, make_database):
    database = make_database(attributes="CREATEDB")
    component = services.component_save(chatbot, "conversations", values=database, secrets={})

    test = services.connection_test_start(chatbot.account, "conversations", component.values, {},
                                          component=component, queue=False)
    test = services.connection_test_run(test.id)

    assert (test.state, BYOIComponent.objects.get(pk=component.pk).status) == ("ok", "ok")


# --- encryption ---------------------------------------------------------------------------------------------

def test_it_warns_that_ssl_mode_disable_does_not_encrypt(customer_db):
    tls = step(check_run("vector_store", customer_db), "tls")

    assert (tls.status, "'disable'" in tls.message) == ("warning", True)


def test_it_warns_that_prefer_against_a_server_without_ssl_does_not_encrypt(customer_db):
    results = check_run("conversations", {**customer_db, "ssl_mode": "prefer"})

    assert (step(results, "tls").status, "does not offer SSL" in step(results, "tls").message) == ("warning", True)
    assert "failed" not in statuses(results).values()


def test_it_warns_about_allow_even_when_the_server_offers_ssl(tls_customer_db):
    results = check_run("conversations", {**tls_customer_db, "ssl_mode": "allow"})

    assert step(results, "tls").status == "warning"


def test_it_does_not_warn_when_ssl_is_required(tls_customer_db):
    assert step(check_run("conversations", tls_customer_db), "tls").status == "ok"


def test_it_warns_that_falkordb_without_ssl_does_not_encrypt():
    settings = {"host": "127.0.0.1", "port": PEERS.falkor.port, "password": PEERS.falkor.password, "ssl": False}

    results = check_run("graph", settings)

    assert (step(results, "tls").status, statuses(results)["operation"]) == ("warning", "ok")


def test_it_warns_that_an_http_endpoint_does_not_encrypt(openai_server):
    results = check_run("llm", openai_server.llm_settings())

    assert (step(results, "tls").status, "http://" in step(results, "tls").message) == ("warning", True)


# --- FalkorDB without MODULE LIST ---------------------------------------------------------------------------

@pytest.fixture
def module_list_denied():
    client = redis.Redis(host="127.0.0.1", port=PEERS.falkor.port, password=PEERS.falkor.password)
    client.execute_command("ACL", "SETUSER", "default", "-module")
    yield
    client.execute_command("ACL", "SETUSER", "default", "+module")


def test_it_says_version_unknown_when_module_list_is_denied(module_list_denied):
    settings = {"host": "127.0.0.1", "port": PEERS.falkor.port, "password": PEERS.falkor.password, "ssl": False}

    results = check_run("graph", settings)

    version = step(results, "version")
    assert version.status == "warning"
    assert "version unknown" in version.message and "GRAPH.CONFIG" in version.message
    assert "4.0.0" not in version.message
    assert statuses(results)["operation"] == "ok"


# --- customers' networks ------------------------------------------------------------------------------------

@pytest.fixture
def internal_name(monkeypatch, settings):
    """db.internal.example resolves to a loopback address (the test's DNS); no network is allow-listed."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        return real("127.0.0.1" if host == "db.internal.example" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    settings.EGRESS_ALLOWED_NETWORKS = []
    return "db.internal.example"


def test_it_refuses_without_saying_what_the_name_resolves_to(internal_name):
    with pytest.raises(BackendError) as caught:
        netguard.resolve_allowed(internal_name, 5432)

    assert caught.value.code == "blocked_address"
    assert "range" in caught.value.message and "refused" in caught.value.message
    assert all(word not in caught.value.message + caught.value.hint for word in ("127.0.0.1", "loopback", "private"))


def test_it_names_wizchats_egress_addresses_in_the_advice(internal_name, settings):
    settings.EGRESS_SOURCE_ADDRESSES = [ipaddress.ip_network("203.0.113.10"), ipaddress.ip_network("198.51.100.0/28")]

    results = check_run("vector_store", {"host": internal_name, "port": 5432, "database": "d", "username": "u",
                                         "password": "p", "ssl_mode": "require"})

    assert "203.0.113.10, 198.51.100.0/28" in results[0].hint and "allow-list" in results[0].hint


def test_it_shows_wizchats_egress_addresses_on_the_byoi_panel(owner_client, settings):
    settings.EGRESS_SOURCE_ADDRESSES = [ipaddress.ip_network("203.0.113.10"), ipaddress.ip_network("198.51.100.0/28")]

    page = owner_client.post(reverse("byoi:panel"), {"byoi-enabled": "on"}).content.decode()

    assert "WizChat connects to your components from\n      <strong>203.0.113.10, 198.51.100.0/28</strong>" in page

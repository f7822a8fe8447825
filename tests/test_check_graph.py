"""Test Connection for FalkorDB, against the session's password-protected FalkorDB, plain and behind stunnel."""

import redis

from byoi.checks import check_run
from tests.peers import PEERS
from wizchat import embedded


def failure(results):
    return next(r for r in results if r.status == "failed")


def plain_settings(**changes):
    return {"host": "127.0.0.1", "port": PEERS.falkor.port, "password": PEERS.falkor.password, "ssl": False, **changes}


def graphs() -> list[str]:
    client = redis.Redis(host="127.0.0.1", port=PEERS.falkor.port, password=PEERS.falkor.password, decode_responses=True)
    return client.execute_command("GRAPH.LIST")


def test_it_passes_every_step_against_a_plain_server():
    results = check_run("graph", plain_settings())

    assert [(r.name, r.status) for r in results] == [
        ("address", "ok"), ("tcp", "ok"), ("tls", "warning"), ("auth", "ok"), ("version", "ok"), ("operation", "ok")]


def test_it_reports_the_falkordb_version():
    results = check_run("graph", plain_settings())

    assert next(r for r in results if r.name == "version").message.startswith("FalkorDB 4.")


def test_it_deletes_its_probe_graph():
    check_run("graph", plain_settings())

    assert [g for g in graphs() if g.startswith("wizchat_probe_")] == []


def test_it_passes_with_ssl_through_stunnel(tls_falkor_settings, trust_test_ca):
    results = check_run("graph", tls_falkor_settings)

    assert [r.status for r in results] == ["ok"] * 6


def test_it_fails_tls_when_the_certificate_is_signed_by_another_ca(tls_falkor_settings, trust_other_ca):
    results = check_run("graph", tls_falkor_settings)

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_fails_tls_when_the_certificate_does_not_name_the_host(tls_falkor_settings, trust_test_ca, stunnel_falkor):
    results = check_run("graph", {**tls_falkor_settings, "host": stunnel_falkor.mismatch_host})

    assert (failure(results).name, failure(results).code) == ("tls", "tls")
    assert stunnel_falkor.mismatch_host in failure(results).message


def test_it_fails_clearly_with_ssl_off_against_a_tls_port(tls_falkor_settings, trust_test_ca):
    results = check_run("graph", {**tls_falkor_settings, "ssl": False})

    assert (failure(results).name, failure(results).code) == ("auth", "tls")
    assert "SSL on" in failure(results).message


def test_it_fails_tls_with_ssl_on_against_a_plain_port(trust_test_ca):
    results = check_run("graph", plain_settings(ssl=True))

    assert (failure(results).name, failure(results).code) == ("tls", "tls")


def test_it_fails_auth_with_a_wrong_password_through_stunnel(tls_falkor_settings, trust_test_ca):
    results = check_run("graph", {**tls_falkor_settings, "password": "Wr0ng-secret-value"})

    assert (failure(results).name, failure(results).code) == ("auth", "auth")
    assert all("Wr0ng-secret-value" not in r.message for r in results)


def test_it_fails_auth_without_a_password_when_the_server_wants_one():
    results = check_run("graph", plain_settings(password=""))

    assert (failure(results).name, failure(results).code) == ("auth", "auth")
    assert "requires a password" in failure(results).message


def test_it_reports_a_closed_port_as_refused():
    results = check_run("graph", plain_settings(port=embedded.free_port()))

    assert (failure(results).name, failure(results).code) == ("tcp", "refused")


def test_it_refuses_a_private_address_before_connecting():
    results = check_run("graph", plain_settings(host="172.16.0.9"))

    assert (results[0].code, [r.status for r in results[1:]]) == ("blocked_address", ["skipped"] * 5)

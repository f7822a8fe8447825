"""BYOI services without HTTP: validation, saving, enabling, Test Connection runs (against real peers)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from byoi import services
from byoi.errors import NotFound
from byoi.models import AuditEvent, BYOIComponent, ConnectionTest
from byoi.services import ComponentInvalid, RateLimited

PG = {"host": "db.example.com", "port": "5432", "database": "vectors", "username": "svc", "ssl_mode": "require"}


@pytest.fixture
def llm_component(chatbot, openai_server):
    settings = openai_server.llm_settings()
    return services.component_save(chatbot, "llm", values={"endpoint": settings["endpoint"], "model": "gpt-4o-mini"},
                                   secrets={"api_key": settings["api_key"]})


def run_now(test: ConnectionTest) -> ConnectionTest:
    return services.connection_test_run(test.id)


# --- validation -------------------------------------------------------------------------------------------


def test_it_applies_the_spec_defaults():
    values, _ = services.component_validate("vector_store", {"host": "db.example.com", "database": "v",
                                                             "username": "u"}, {"password": "pw"}, None)
    assert (values["port"], values["ssl_mode"]) == (5432, "require")


def test_it_defaults_embedding_dimensions_to_3072():
    values, _ = services.component_validate("embeddings", {"endpoint": "https://api.example.com/v1", "model": "m"},
                                            {"api_key": "k"}, None)
    assert values["dimensions"] == 3072


def test_it_names_every_missing_required_field():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("vector_store", {}, {}, None)
    assert set(caught.value.errors) == {"host", "database", "username", "password"}


def test_it_refuses_an_endpoint_that_is_not_http():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("llm", {"endpoint": "ftp://api.example.com", "model": "m"}, {"api_key": "k"}, None)
    assert "http://" in caught.value.errors["endpoint"]


def test_it_refuses_credentials_inside_an_endpoint_url():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("llm", {"endpoint": "https://user:hunter2@api.example.com/v1", "model": "m"},
                                    {"api_key": "k"}, None)
    assert "hunter2" not in str(caught.value)


def test_it_refuses_a_port_out_of_range():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("vector_store", {**PG, "port": "70000"}, {"password": "pw"}, None)
    assert "between 1 and 65535" in caught.value.errors["port"]


def test_it_reads_ssl_false_for_falkordb():
    values, _ = services.component_validate("graph", {"host": "g.example.com", "ssl": "false"}, {}, None)
    assert values["ssl"] is False


def test_it_keeps_the_stored_password_when_the_field_is_left_blank(chatbot):
    component = services.component_save(chatbot, "vector_store", values=PG, secrets={"password": "s3cret-pw"})
    _, secrets = services.component_validate("vector_store", PG, {"password": ""}, component)
    assert secrets["password"] == "s3cret-pw"


def test_it_asks_to_reenter_the_password_when_the_host_changed(chatbot):
    component = services.component_save(chatbot, "vector_store", values=PG, secrets={"password": "s3cret-pw"})
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("vector_store", {**PG, "host": "other.example.com"}, {}, component)
    assert caught.value.errors == {"password": "Re-enter the password: the host changed."}


def test_it_asks_to_reenter_the_api_key_when_the_endpoint_changed(llm_component):
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("llm", {"endpoint": "https://elsewhere.example.com/v1", "model": "gpt-4o-mini"},
                                    {}, llm_component)
    assert caught.value.errors == {"api_key": "Re-enter the api key: the api endpoint changed."}


@pytest.mark.parametrize("kind", ["vector_store", "conversations"])
@pytest.mark.parametrize(("stored_mode", "new_mode"), [("require", "disable"), ("verify-full", "require"),
                                                        ("verify-ca", "prefer"), ("prefer", "allow")])
def test_it_asks_to_reenter_the_password_when_the_ssl_mode_is_weakened(chatbot, kind, stored_mode, new_mode):
    component = services.component_save(chatbot, kind, values={**PG, "ssl_mode": stored_mode},
                                        secrets={"password": "s3cret-pw"})
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate(kind, {**PG, "ssl_mode": new_mode}, {"password": ""}, component)
    assert caught.value.errors == {"password": f"Re-enter the password: the SSL mode goes from {stored_mode} to "
                                               f"{new_mode}, so it would travel less protected. Type it again to "
                                               "confirm."}
    _, secrets = services.component_validate(kind, {**PG, "ssl_mode": new_mode}, {"password": "s3cret-pw"},
                                             component)
    assert secrets["password"] == "s3cret-pw"
    component.refresh_from_db()
    assert component.values["ssl_mode"] == stored_mode and component.secrets["password"] == "s3cret-pw"


@pytest.mark.parametrize(("stored_mode", "new_mode"), [("require", "require"), ("require", "verify-full"),
                                                        ("disable", "prefer")])
def test_it_keeps_the_stored_password_when_the_ssl_mode_stays_or_gets_stronger(chatbot, stored_mode, new_mode):
    component = services.component_save(chatbot, "vector_store", values={**PG, "ssl_mode": stored_mode},
                                        secrets={"password": "s3cret-pw"})
    _, secrets = services.component_validate("vector_store", {**PG, "ssl_mode": new_mode}, {}, component)
    assert secrets["password"] == "s3cret-pw"


FALKOR = {"host": "graph.example.com", "port": "6379", "ssl": True}


def test_it_asks_to_reenter_the_graph_password_when_ssl_is_turned_off(chatbot):
    component = services.component_save(chatbot, "graph", values=FALKOR, secrets={"password": "g-s3cret"})
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("graph", {**FALKOR, "ssl": False}, {}, component)
    assert caught.value.errors["password"].startswith("Re-enter the password: SSL is being turned off")
    _, secrets = services.component_validate("graph", {**FALKOR, "ssl": True}, {}, component)
    assert secrets["password"] == "g-s3cret"


def test_it_lets_ssl_be_turned_off_without_a_secret_when_none_is_stored(chatbot):
    component = services.component_save(chatbot, "graph", values=FALKOR, secrets={})
    values, secrets = services.component_validate("graph", {**FALKOR, "ssl": False}, {}, component)
    assert values["ssl"] is False and secrets == {}


# --- saving and enabling ----------------------------------------------------------------------------------


def test_it_saves_a_new_component_as_untested(chatbot):
    component = services.component_save(chatbot, "vector_store", values=PG, secrets={"password": "pw-123456"})
    assert component.status == "untested"


def test_it_keeps_the_secret_only_in_the_encrypted_field(chatbot):
    component = services.component_save(chatbot, "vector_store", values=PG, secrets={"password": "pw-123456"})
    assert "password" not in BYOIComponent.objects.get(pk=component.pk).values


def test_it_records_an_audit_event_without_the_secret(chatbot, owner):
    services.component_save(chatbot, "vector_store", values=PG, secrets={"password": "pw-123456"}, actor=owner)
    event = AuditEvent.objects.get(action="byoi.component_saved")
    assert "pw-123456" not in str(event.detail) and "password" in event.detail["changed"]


def test_it_resets_the_status_when_the_settings_change(llm_component):
    run_now(services.connection_test_retest(llm_component))
    component = services.component_save(llm_component.chatbot, "llm",
                                        values={**llm_component.values, "model": "llama-3.1-70b"}, secrets={})
    assert component.status == "untested"


def test_it_keeps_the_status_when_the_same_settings_are_saved_again(llm_component):
    run_now(services.connection_test_retest(llm_component))
    component = services.component_save(llm_component.chatbot, "llm", values=llm_component.values, secrets={})
    assert component.status == "ok"


def test_it_adopts_the_result_of_a_test_run_before_saving(chatbot, openai_server):
    settings = openai_server.llm_settings()
    values = {"endpoint": settings["endpoint"], "model": "gpt-4o-mini"}
    run_now(services.connection_test_start(chatbot.account, "llm", values, {"api_key": settings["api_key"]}))
    component = services.component_save(chatbot, "llm", values=values, secrets={"api_key": settings["api_key"]})
    assert component.status == "ok"


def test_it_disables_a_component_and_keeps_its_settings(llm_component):
    services.component_disable(llm_component.chatbot, "llm")
    component = BYOIComponent.objects.get(pk=llm_component.pk)
    assert (component.enabled, component.secrets["api_key"]) == (False, llm_component.secrets["api_key"])


def test_it_switches_byoi_on_for_a_chatbot(chatbot, owner):
    services.byoi_set_enabled(chatbot, True, actor=owner)
    assert AuditEvent.objects.filter(action="byoi.enabled", actor=owner).exists()


# --- Test Connection --------------------------------------------------------------------------------------


def test_it_queues_the_task_only_when_the_transaction_commits(llm_component, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.connection_test_retest(llm_component)
    assert len(callbacks) == 1


def test_it_passes_a_component_whose_endpoint_answers(llm_component):
    test = run_now(services.connection_test_retest(llm_component))
    # Only the plain-http test server's TLS step is not a pass: a warning, which does not fail the run.
    assert (test.state, [(s["name"], s["status"]) for s in test.steps if s["status"] != "ok"]) == \
        ("ok", [("tls", "warning")])


def test_it_marks_the_component_ok_after_a_passing_test(llm_component):
    run_now(services.connection_test_retest(llm_component))
    component = BYOIComponent.objects.get(pk=llm_component.pk)
    assert (component.status, component.last_checked is not None) == ("ok", True)


def test_it_fails_with_a_code_and_the_spec_hint_for_a_wrong_key(chatbot, openai_server):
    component = services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url,
                                                                "model": "gpt-4o-mini"}, secrets={"api_key": "sk-wrong-key-123"})
    test = run_now(services.connection_test_retest(component))
    failed = next(s for s in test.steps if s["status"] == "failed")
    assert (test.state, failed["code"], failed["hint"].startswith("Authentication Failed")) == ("failed", "auth", True)


def test_it_saves_the_failure_on_the_component(chatbot, openai_server):
    component = services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url,
                                                                "model": "gpt-4o-mini"}, secrets={"api_key": "sk-wrong-key-123"})
    run_now(services.connection_test_retest(component))
    component.refresh_from_db()
    assert (component.status, component.error_code, bool(component.error_message)) == ("failed", "auth", True)


def test_it_drops_the_candidate_secrets_when_the_test_finishes(llm_component):
    test = run_now(services.connection_test_retest(llm_component))
    assert ConnectionTest.objects.get(pk=test.pk).secrets == {}


def test_it_does_not_update_a_component_whose_settings_changed_during_the_test(llm_component):
    test = services.connection_test_retest(llm_component)
    services.component_save(llm_component.chatbot, "llm", values={**llm_component.values, "model": "llama-3.1-70b"},
                            secrets={})
    run_now(test)
    assert BYOIComponent.objects.get(pk=llm_component.pk).status == "untested"


def test_it_returns_the_running_test_instead_of_queuing_a_duplicate(llm_component):
    first = services.connection_test_retest(llm_component)
    assert services.connection_test_retest(llm_component).pk == first.pk


def test_it_limits_test_runs_per_account_per_minute(chatbot, settings):
    settings.BYOI_TEST_RATE_LIMIT = 2
    for n in range(2):
        services.connection_test_start(chatbot.account, "vector_store", {**PG, "database": f"db{n}"},
                                       {"password": "pw"})
    with pytest.raises(RateLimited):
        services.connection_test_start(chatbot.account, "vector_store", {**PG, "database": "db3"}, {"password": "pw"})


def test_it_counts_the_rate_limit_over_the_last_minute_only(chatbot, settings):
    settings.BYOI_TEST_RATE_LIMIT = 1
    old = services.connection_test_start(chatbot.account, "vector_store", PG, {"password": "pw"})
    ConnectionTest.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(seconds=61))
    assert services.connection_test_start(chatbot.account, "vector_store", {**PG, "database": "other"},
                                          {"password": "pw"}).pk != old.pk


def test_it_hides_another_accounts_test(llm_component, outsider):
    test = services.connection_test_retest(llm_component)
    with pytest.raises(NotFound):
        services.connection_test_get_for_user(outsider, test.id)


def test_it_answers_404_for_a_malformed_test_id(owner):
    with pytest.raises(NotFound):
        services.connection_test_get_for_user(owner, "not-a-uuid")


def test_it_refuses_to_test_another_accounts_chatbot(llm_component, outsider):
    with pytest.raises(NotFound):
        services.connection_test_start(outsider.membership.account, "llm", llm_component.values, {},
                                       chatbot=llm_component.chatbot)


def test_it_closes_a_test_whose_worker_never_ran_it(llm_component, owner):
    test = services.connection_test_retest(llm_component)
    ConnectionTest.objects.filter(pk=test.pk).update(created=timezone.now() - timedelta(hours=1))
    test = services.connection_test_get_for_user(owner, test.id)
    assert (test.state, test.error_code, test.secrets) == ("failed", "unavailable", {})


def test_it_purges_tests_older_than_the_ttl(llm_component, settings):
    test = run_now(services.connection_test_retest(llm_component))
    ConnectionTest.objects.filter(pk=test.pk).update(
        created=timezone.now() - timedelta(seconds=settings.CONNECTION_TEST_TTL_SECONDS + 1))
    services.connection_test_purge()
    assert not ConnectionTest.objects.filter(pk=test.pk).exists()


def test_it_keeps_tests_younger_than_the_ttl(llm_component):
    test = run_now(services.connection_test_retest(llm_component))
    services.connection_test_purge()
    assert ConnectionTest.objects.filter(pk=test.pk).exists()


def test_it_turns_an_unexpected_exception_in_a_step_into_a_plain_failure(chatbot, openai_server):
    openai_server.mode = "no_choices"  # JSON without `choices`: the backend may trip over it
    component = services.component_save(chatbot, "llm", values={"endpoint": openai_server.base_url,
                                                                "model": "gpt-4o-mini"},
                                        secrets={"api_key": openai_server.api_key})
    test = run_now(services.connection_test_retest(component))
    failed = next(s for s in test.steps if s["status"] == "failed")
    assert failed["code"] in ("protocol", "unavailable") and "Traceback" not in failed["message"]


def test_it_ignores_an_attempt_to_switch_off_the_egress_guard(chatbot):
    component = services.component_save(chatbot, "vector_store", values={**PG, "egress_guard": False},
                                        secrets={"password": "pw-123456"})
    assert "egress_guard" not in component.settings_dict()


def test_it_refuses_an_audit_detail_keyed_by_a_secret_field(chatbot):
    from byoi.audit import audit_record

    with pytest.raises(ValueError):
        audit_record("byoi.component_saved", chatbot=chatbot, password="pw-123456")


def test_it_records_a_finished_test_without_its_secret(llm_component):
    run_now(services.connection_test_retest(llm_component))
    events = AuditEvent.objects.filter(action__startswith="byoi.connection_test")
    assert events.count() == 2 and llm_component.secrets["api_key"] not in str([e.detail for e in events])


def test_it_reports_an_exception_a_step_did_not_expect_as_a_plain_failure(customer_db):
    from byoi.checks import check_run

    # A port that bypassed validation makes the address step raise a bare ValueError.
    results = check_run("vector_store", {**customer_db, "port": "abc"})
    failed = next(r for r in results if r.status == "failed")
    assert (failed.code, "Traceback" in failed.message, customer_db["password"] in failed.message) == (
        "unavailable", False, False)


def test_it_marks_the_steps_after_an_unexpected_failure_skipped(customer_db):
    from byoi.checks import check_run

    results = check_run("vector_store", {**customer_db, "port": "abc"})
    assert {r.status for r in results[1:]} == {"skipped"}


def test_it_asks_for_the_port_in_its_own_field():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("vector_store", {**PG, "host": "db.example.com:6543"}, {"password": "pw"}, None)
    assert caught.value.errors == {"host": "Host must not include the port; put it in Port."}


def test_it_accepts_an_ipv6_host():
    values, _ = services.component_validate("vector_store", {**PG, "host": "2001:db8::10"}, {"password": "pw"}, None)
    assert values["host"] == "2001:db8::10"


def test_it_refuses_control_characters_in_a_setting():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("vector_store", {**PG, "database": "vec\x00tors"}, {"password": "pw"}, None)
    assert set(caught.value.errors) == {"database"}


def test_it_refuses_a_nul_character_in_a_password_without_echoing_it():
    with pytest.raises(ComponentInvalid) as caught:
        services.component_validate("vector_store", PG, {"password": "pass\x00word-secret"}, None)
    assert "word-secret" not in str(caught.value)


def test_it_passes_the_real_customer_vector_store(chatbot, customer_db):
    values = {k: v for k, v in customer_db.items() if k != "password"}
    component = services.component_save(chatbot, "vector_store", values=values,
                                        secrets={"password": customer_db["password"]})
    assert run_now(services.connection_test_retest(component)).state == "ok"


def test_it_passes_the_real_customer_conversations_database(chatbot, customer_db):
    values = {k: v for k, v in customer_db.items() if k != "password"}
    component = services.component_save(chatbot, "conversations", values=values,
                                        secrets={"password": customer_db["password"]})
    assert run_now(services.connection_test_retest(component)).state == "ok"


def test_it_passes_the_real_falkordb(chatbot, peers):
    component = services.component_save(chatbot, "graph", values={"host": "127.0.0.1", "port": peers.falkor.port,
                                                                   "ssl": False},
                                        secrets={"password": peers.falkor.password})
    assert run_now(services.connection_test_retest(component)).state == "ok"


def test_it_fails_falkordb_with_a_wrong_password_as_auth(chatbot, peers):
    component = services.component_save(chatbot, "graph", values={"host": "127.0.0.1", "port": peers.falkor.port,
                                                                   "ssl": False},
                                        secrets={"password": "not-the-password"})
    assert run_now(services.connection_test_retest(component)).error_code == "auth"


def test_it_passes_the_real_embeddings_endpoint(chatbot, openai_server):
    component = services.component_save(chatbot, "embeddings", values={"endpoint": openai_server.base_url,
                                                                       "model": "text-embedding-3-large"},
                                        secrets={"api_key": openai_server.api_key})
    assert run_now(services.connection_test_retest(component)).state == "ok"


def test_it_purges_from_the_command_line_with_a_summary(llm_component, settings):
    from io import StringIO

    from django.core.management import call_command

    test = run_now(services.connection_test_retest(llm_component))
    ConnectionTest.objects.filter(pk=test.pk).update(
        created=timezone.now() - timedelta(seconds=settings.CONNECTION_TEST_TTL_SECONDS + 1))
    out = StringIO()
    call_command("purge_connection_tests", stdout=out)
    assert out.getvalue().startswith("Purged 1 expired connection test(s)")


def test_it_purges_nothing_on_a_dry_run(llm_component, settings):
    from io import StringIO

    from django.core.management import call_command

    test = run_now(services.connection_test_retest(llm_component))
    ConnectionTest.objects.filter(pk=test.pk).update(
        created=timezone.now() - timedelta(seconds=settings.CONNECTION_TEST_TTL_SECONDS + 1))
    call_command("purge_connection_tests", "--dry-run", stdout=StringIO())
    assert ConnectionTest.objects.filter(pk=test.pk).exists()

"""BYOI views: Test Connection and its polling status, Re-test, the chatbot page's status, BYOI settings."""

import pytest
from django.test import override_settings

from byoi import services
from byoi.errors import AUTH_HINT, HINTS
from byoi.models import BYOIComponent, ConnectionTest

SECRET = "s3cret-Pa55word-xyz"
NEW_SECRET = "n3w-Pa55word-abc"
HX = {"HTTP_HX_REQUEST": "true"}
PG = {"host": "db.example.com", "port": 5432, "database": "vectors", "username": "wizchat", "ssl_mode": "require"}
LLM = {"endpoint": "https://llm.example.com/v1", "model": "gpt-4o"}


def llm_post(**overrides):
    data = {"llm-endpoint": LLM["endpoint"], "llm-api_key": SECRET, "llm-model": LLM["model"]}
    data.update({f"llm-{k}": v for k, v in overrides.items()})
    return data


def pg_post(prefix="vector_store", **overrides):
    data = {f"{prefix}-{k}": str(v) for k, v in PG.items()}
    data[f"{prefix}-enabled"] = "on"
    data[f"{prefix}-password"] = SECRET
    data.update({f"{prefix}-{k}": v for k, v in overrides.items()})
    return data


@pytest.fixture
def byoi_bot(chatbot, owner):
    """The owner's chatbot with BYOI on: a custom LLM and Vector Store (untested)."""
    services.byoi_set_enabled(chatbot, True)
    services.component_save(chatbot, "llm", values=LLM, secrets={"api_key": SECRET})
    services.component_save(chatbot, "vector_store", values=PG, secrets={"password": SECRET})
    return chatbot


def make_test(account, state="running", steps=None, kind="llm", component=None, chatbot=None):
    test = ConnectionTest(account=account, kind=kind, values=dict(LLM), state=state, steps=steps or [],
                          component=component, chatbot=chatbot)
    test.secrets = {"api_key": SECRET}
    test.save()
    return test


STEPS_AUTH_FAILED = [
    {"name": "address", "label": "Address allowed", "status": "ok", "code": "", "message": "", "hint": "", "ms": 1},
    {"name": "tcp", "label": "TCP connection", "status": "ok", "code": "", "message": "", "hint": "", "ms": 2},
    {"name": "auth", "label": "Authentication", "status": "failed", "code": "auth",
     "message": "The server refused the API key (HTTP 401).", "hint": AUTH_HINT, "ms": 3},
    {"name": "operation", "label": "Operation", "status": "skipped", "code": "", "message": "", "hint": "", "ms": 0},
]


# --- Test Connection ----------------------------------------------------------------------------------------


def test_it_starts_a_connection_test_with_the_unsaved_values(owner_client, owner):
    response = owner_client.post("/byoi/test/llm/", llm_post(), **HX)
    test = ConnectionTest.objects.get()
    assert response.status_code == 200
    assert (test.kind, test.values["model"], test.account) == ("llm", "gpt-4o", owner.membership.account)
    assert test.secrets == {"api_key": SECRET}


def test_it_answers_with_a_partial_that_polls_the_tests_status(owner_client):
    body = owner_client.post("/byoi/test/llm/", llm_post(), **HX).content.decode()
    test = ConnectionTest.objects.get()
    assert f'hx-get="/byoi/tests/{test.id}/"' in body
    assert 'hx-trigger="load delay:500ms, every 1s"' in body
    assert 'id="byoi-llm-test"' in body
    assert "<html" not in body


def test_it_never_renders_the_tested_secret(owner_client):
    body = owner_client.post("/byoi/test/llm/", llm_post(), **HX).content.decode()
    test = ConnectionTest.objects.get()
    assert SECRET not in body
    assert SECRET not in owner_client.get(f"/byoi/tests/{test.id}/", **HX).content.decode()


def test_it_shows_the_same_test_on_a_second_click(owner_client):
    owner_client.post("/byoi/test/llm/", llm_post(), **HX)
    body = owner_client.post("/byoi/test/llm/", llm_post(), **HX).content.decode()
    test = ConnectionTest.objects.get()
    assert f"/byoi/tests/{test.id}/" in body


def test_it_says_what_to_fix_instead_of_starting_a_test_with_a_missing_field(owner_client):
    body = owner_client.post("/byoi/test/llm/", llm_post(model=""), **HX).content.decode()
    assert "Model Name is required." in body
    assert not ConnectionTest.objects.exists()


def test_it_shows_the_services_validation_message_when_a_test_cannot_start(owner_client):
    body = owner_client.post("/byoi/test/vector_store/", pg_post(host="db.example.com/x"), **HX).content.decode()
    assert "must be a host name or IP address only" in body
    assert not ConnectionTest.objects.exists()


@override_settings(BYOI_TEST_RATE_LIMIT=1)
def test_it_shows_a_clear_message_when_rate_limited(owner_client):
    owner_client.post("/byoi/test/llm/", llm_post(), **HX)
    response = owner_client.post("/byoi/test/llm/", llm_post(model="other"), **HX)
    assert response.status_code == 286
    assert "You can run 1 connection tests a minute. Wait a minute and try again." in response.content.decode()
    assert ConnectionTest.objects.count() == 1


def test_it_refuses_test_connection_on_a_plan_without_byoi(client, free_user):
    client.force_login(free_user)
    body = client.post("/byoi/test/llm/", llm_post(), **HX).content.decode()
    assert "BYOI is not included in the Free plan" in body
    assert not ConnectionTest.objects.exists()


def test_it_disables_the_button_while_the_request_is_in_flight(owner_client):
    body = owner_client.post("/byoi/panel/llm/", {"llm-enabled": "on"}, **HX).content.decode()
    assert 'hx-disabled-elt="this"' in body
    assert 'hx-include="#byoi-llm-fields"' in body


def test_it_tests_an_existing_component_with_its_stored_secret_when_left_blank(owner_client, byoi_bot):
    owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/test/llm/", llm_post(api_key=""), **HX)
    test = ConnectionTest.objects.get()
    assert test.secrets == {"api_key": SECRET}
    assert test.component == byoi_bot.components.get(kind="llm")


def test_it_asks_to_re_enter_the_secret_when_testing_a_new_endpoint(owner_client, byoi_bot):
    data = llm_post(api_key="", endpoint="https://other.example.com/v1")
    body = owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/test/llm/", data, **HX).content.decode()
    assert "Re-enter the api key" in body
    assert not ConnectionTest.objects.exists()


def test_it_answers_404_to_another_account_testing_its_chatbot(client, outsider, byoi_bot):
    client.force_login(outsider)
    assert client.post(f"/byoi/chatbots/{byoi_bot.id}/test/llm/", llm_post(), **HX).status_code == 404


# --- the status of a test -----------------------------------------------------------------------------------


def test_it_keeps_polling_while_the_test_runs(owner_client, owner):
    test = make_test(owner.membership.account, steps=STEPS_AUTH_FAILED[:2])
    response = owner_client.get(f"/byoi/tests/{test.id}/", **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "hx-trigger=" in body
    assert "Address allowed" in body
    assert "TCP connection" in body


def test_it_stops_polling_when_the_test_is_finished(owner_client, owner):
    test = make_test(owner.membership.account, state="failed", steps=STEPS_AUTH_FAILED)
    response = owner_client.get(f"/byoi/tests/{test.id}/", **HX)
    assert response.status_code == 286
    assert "hx-trigger=" not in response.content.decode()


def test_it_shows_the_failing_steps_code_and_the_specs_hint(owner_client, owner):
    test = make_test(owner.membership.account, state="failed", steps=STEPS_AUTH_FAILED)
    body = owner_client.get(f"/byoi/tests/{test.id}/", **HX).content.decode()
    assert '<code class="code">auth</code>' in body
    assert "The server refused the API key (HTTP 401)." in body
    assert "Authentication Failed: verify the API key or password" in body


def test_it_shows_each_steps_state(owner_client, owner):
    test = make_test(owner.membership.account, state="failed", steps=STEPS_AUTH_FAILED)
    body = owner_client.get(f"/byoi/tests/{test.id}/", **HX).content.decode()
    assert body.count('class="step step-ok"') == 2
    assert body.count('class="step step-failed"') == 1
    assert body.count('class="step step-skipped"') == 1


def test_it_shows_a_passed_test_as_green(owner_client, owner):
    steps = [dict(s, status="ok", code="", message="", hint="") for s in STEPS_AUTH_FAILED]
    test = make_test(owner.membership.account, state="ok", steps=steps)
    body = owner_client.get(f"/byoi/tests/{test.id}/", **HX).content.decode()
    assert "Connection OK" in body
    assert "step-failed" not in body


def test_it_renders_a_full_page_for_a_request_without_htmx(owner_client, owner):
    test = make_test(owner.membership.account, state="failed", steps=STEPS_AUTH_FAILED)
    response = owner_client.get(f"/byoi/tests/{test.id}/")
    assert response.status_code == 200
    assert "<html" in response.content.decode()


def test_it_answers_404_to_another_accounts_test(client, outsider, owner):
    test = make_test(owner.membership.account)
    client.force_login(outsider)
    assert client.get(f"/byoi/tests/{test.id}/", **HX).status_code == 404


# --- the chatbot page ---------------------------------------------------------------------------------------


def detail(client, bot):
    return client.get(f"/dashboard/chatbots/{bot.id}/").content.decode()


def set_status(bot, kind, status, code="", message=""):
    from django.utils import timezone

    BYOIComponent.objects.filter(chatbot=bot, kind=kind).update(
        status=status, error_code=code, error_message=message, last_checked=timezone.now())


def test_it_shows_a_green_checkmark_for_a_component_that_passed(owner_client, byoi_bot):
    set_status(byoi_bot, "llm", "ok")
    body = detail(owner_client, byoi_bot)
    row = body[body.index('id="byoi-row-llm"'):body.index('id="byoi-row-embeddings"')]
    assert "✓</span> Connected" in row
    assert "Last checked" in row


def test_it_shows_a_red_cross_with_the_last_error_and_hint(owner_client, byoi_bot):
    set_status(byoi_bot, "vector_store", "failed", "timeout", "No answer from db.example.com:5432 within 2 s.")
    body = detail(owner_client, byoi_bot)
    row = body[body.index('id="byoi-row-vector_store"'):body.index('id="byoi-row-graph"')]
    assert "✗</span> Failed" in row
    assert "No answer from db.example.com:5432 within 2 s." in row
    assert HINTS["timeout"] in row


def test_it_shows_an_untested_component_in_grey(owner_client, byoi_bot):
    body = detail(owner_client, byoi_bot)
    row = body[body.index('id="byoi-row-llm"'):body.index('id="byoi-row-embeddings"')]
    assert 'class="badge untested"' in row
    assert "Never checked" in row


def test_it_labels_the_default_components_as_wizchat_defaults(owner_client, byoi_bot):
    body = detail(owner_client, byoi_bot)
    for kind in ["embeddings", "graph", "conversations"]:
        row = body[body.index(f'id="byoi-row-{kind}"'):]
        assert row.index("WizChat default") < row.index("</li>")


def test_it_shows_where_a_component_lives_without_its_secret(owner_client, byoi_bot):
    body = detail(owner_client, byoi_bot)
    assert "db.example.com" in body
    assert "https://llm.example.com/v1" in body
    assert "gpt-4o" in body
    assert SECRET not in body


def test_it_offers_re_test_and_the_byoi_settings_link(owner_client, byoi_bot):
    body = detail(owner_client, byoi_bot)
    assert f'hx-post="/byoi/chatbots/{byoi_bot.id}/components/llm/retest/"' in body
    assert f'href="/byoi/chatbots/{byoi_bot.id}/"' in body


def test_it_shows_every_component_as_default_when_byoi_is_off(owner_client, chatbot):
    body = detail(owner_client, chatbot)
    assert body.count('class="badge default"') == 5
    assert "Re-test" not in body


def test_it_tells_a_free_account_which_plans_include_byoi(client, free_user):
    from chatbots.services import chatbot_create

    bot = chatbot_create(free_user.membership.account, name="Free bot")
    client.force_login(free_user)
    assert "available on the Pro, Pro+, Business, and Enterprise plans" in detail(client, bot)


def test_it_keeps_polling_a_running_re_test_on_the_chatbot_page(owner_client, owner, byoi_bot):
    component = byoi_bot.components.get(kind="llm")
    test = make_test(owner.membership.account, component=component, chatbot=byoi_bot)
    assert f'hx-get="/byoi/tests/{test.id}/?in=row"' in detail(owner_client, byoi_bot)


# --- Re-test ------------------------------------------------------------------------------------------------


def test_it_re_tests_a_saved_component(owner_client, byoi_bot):
    body = owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/components/llm/retest/", **HX).content.decode()
    test = ConnectionTest.objects.get()
    assert test.component == byoi_bot.components.get(kind="llm")
    assert test.secrets == {"api_key": SECRET}
    assert f'hx-get="/byoi/tests/{test.id}/?in=row"' in body


def test_it_redirects_a_re_test_without_javascript_to_its_status_page(owner_client, byoi_bot):
    response = owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/components/llm/retest/")
    assert response["Location"] == f"/byoi/tests/{ConnectionTest.objects.get().id}/"


def test_it_answers_404_to_a_re_test_of_a_kind_without_a_component(owner_client, byoi_bot):
    assert owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/components/graph/retest/", **HX).status_code == 404


def test_it_answers_404_to_another_account_re_testing(client, outsider, byoi_bot):
    client.force_login(outsider)
    assert client.post(f"/byoi/chatbots/{byoi_bot.id}/components/llm/retest/", **HX).status_code == 404
    assert not ConnectionTest.objects.exists()


def test_it_re_renders_the_whole_row_when_a_re_test_on_the_chatbot_page_finishes(owner_client, owner, byoi_bot):
    component = byoi_bot.components.get(kind="llm")
    set_status(byoi_bot, "llm", "ok")
    test = make_test(owner.membership.account, state="ok", component=component, chatbot=byoi_bot)
    response = owner_client.get(f"/byoi/tests/{test.id}/?in=row", **HX)
    body = response.content.decode()
    assert response.status_code == 286
    assert response["HX-Retarget"] == "#byoi-row-llm"
    assert 'id="byoi-row-llm"' in body
    assert "✓</span> Connected" in body
    assert "Last checked" in body


def test_it_polls_a_re_test_with_the_row_context(owner_client, byoi_bot):
    body = owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/components/llm/retest/", **HX).content.decode()
    assert "?in=row" in body


# --- BYOI settings of an existing chatbot -------------------------------------------------------------------


def settings_url(bot):
    return f"/byoi/chatbots/{bot.id}/"


def current_post(**extra):
    """The settings form as the page renders it for byoi_bot, secrets left blank."""
    data = {"byoi-enabled": "on", "llm-enabled": "on", **llm_post(api_key=""), **pg_post(password="")}
    data.update(extra)
    return data


def test_it_shows_the_saved_settings_without_secrets(owner_client, byoi_bot):
    body = owner_client.get(settings_url(byoi_bot)).content.decode()
    assert 'value="db.example.com"' in body
    assert 'value="https://llm.example.com/v1"' in body
    assert "Stored — leave blank to keep it" in body
    assert SECRET not in body


def test_it_keeps_the_stored_secret_when_the_field_is_left_blank(owner_client, byoi_bot):
    response = owner_client.post(settings_url(byoi_bot), current_post(**{"llm-model": "gpt-4.1"}))
    component = byoi_bot.components.get(kind="llm")
    assert response.status_code == 302
    assert component.values["model"] == "gpt-4.1"
    assert component.secrets == {"api_key": SECRET}


def test_it_requires_the_secret_again_when_the_host_changes(owner_client, byoi_bot):
    response = owner_client.post(settings_url(byoi_bot), current_post(**{"vector_store-host": "new.example.com"}))
    body = response.content.decode()
    assert "Re-enter the password: the host changed." in body
    assert byoi_bot.components.get(kind="vector_store").values["host"] == "db.example.com"


def test_it_requires_the_secret_again_when_the_ssl_mode_is_lowered(owner_client, byoi_bot):
    response = owner_client.post(settings_url(byoi_bot), current_post(**{"vector_store-ssl_mode": "disable"}))
    body = response.content.decode()
    assert "Re-enter the password: the SSL mode goes from require to disable" in body
    assert SECRET not in body
    assert byoi_bot.components.get(kind="vector_store").values["ssl_mode"] == "require"


def test_it_saves_a_new_host_with_a_re_entered_secret(owner_client, byoi_bot):
    data = current_post(**{"vector_store-host": "new.example.com", "vector_store-password": NEW_SECRET})
    owner_client.post(settings_url(byoi_bot), data)
    component = byoi_bot.components.get(kind="vector_store")
    assert (component.values["host"], component.secrets["password"]) == ("new.example.com", NEW_SECRET)


def test_it_never_renders_a_secret_on_a_settings_error(owner_client, byoi_bot):
    data = current_post(**{"vector_store-host": "", "vector_store-password": NEW_SECRET})
    body = owner_client.post(settings_url(byoi_bot), data).content.decode()
    assert NEW_SECRET not in body
    assert SECRET not in body


def test_it_adds_a_component_later(owner_client, byoi_bot):
    owner_client.post(settings_url(byoi_bot), current_post(**pg_post("conversations", database="chats")))
    assert byoi_bot.components.get(kind="conversations").enabled


def test_it_disables_a_component_and_warns_that_data_is_not_migrated(owner_client, byoi_bot):
    data = current_post()
    del data["vector_store-enabled"]
    response = owner_client.post(settings_url(byoi_bot), data, follow=True)
    body = response.content.decode()
    assert not byoi_bot.components.get(kind="vector_store").enabled
    assert "Data already in your infrastructure stays there and is not copied to WizChat" in body
    assert "manage.py" not in body


def test_it_warns_before_a_component_is_disabled(owner_client, byoi_bot):
    url = f"/byoi/chatbots/{byoi_bot.id}/panel/vector_store/"
    body = owner_client.post(url, {"byoi-enabled": "on"}, **HX).content.decode()
    assert "Disabling Vector Store" in body
    assert "not copied to WizChat" in body
    assert "manage.py" not in body


def test_it_warns_before_byoi_as_a_whole_is_disabled(owner_client, byoi_bot):
    body = owner_client.post(f"/byoi/chatbots/{byoi_bot.id}/panel/", {}, **HX).content.decode()
    assert "Disabling BYOI" in body
    assert "not copied to WizChat" in body
    assert "manage.py" not in body


def test_it_disables_byoi_as_a_whole(owner_client, byoi_bot):
    response = owner_client.post(settings_url(byoi_bot), {}, follow=True)
    byoi_bot.refresh_from_db()
    assert not byoi_bot.byoi_enabled
    assert "Now using WizChat defaults for: LLM, Vector Store" in response.content.decode()


def test_it_enables_byoi_later_on_an_existing_chatbot(owner_client, chatbot):
    data = {"byoi-enabled": "on", "llm-enabled": "on", **llm_post()}
    owner_client.post(settings_url(chatbot), data)
    chatbot.refresh_from_db()
    assert chatbot.byoi_enabled
    assert chatbot.components.get(kind="llm").secrets == {"api_key": SECRET}


def test_it_refuses_to_enable_byoi_on_a_free_accounts_chatbot(client, free_user):
    from chatbots.services import chatbot_create

    bot = chatbot_create(free_user.membership.account, name="Free bot")
    client.force_login(free_user)
    body = client.post(settings_url(bot), {"byoi-enabled": "on", "llm-enabled": "on", **llm_post()}).content.decode()
    bot.refresh_from_db()
    assert "BYOI is not included in the Free plan" in body
    assert not bot.byoi_enabled
    assert not bot.components.exists()


@pytest.mark.parametrize("suffix", ["", "panel/", "panel/llm/"])
def test_it_answers_404_to_another_account_for_byoi_settings(client, outsider, byoi_bot, suffix):
    client.force_login(outsider)
    url = settings_url(byoi_bot) + suffix
    response = client.get(url) if suffix == "" else client.post(url, {}, **HX)
    assert response.status_code == 404


def test_it_answers_404_to_another_account_saving_byoi_settings(client, outsider, byoi_bot):
    client.force_login(outsider)
    assert client.post(settings_url(byoi_bot), {}).status_code == 404
    byoi_bot.refresh_from_db()
    assert byoi_bot.byoi_enabled


def test_it_never_renders_a_secret_on_the_chatbot_edit_page(owner_client, byoi_bot):
    body = owner_client.get(f"/dashboard/chatbots/{byoi_bot.id}/edit/").content.decode()
    assert f'href="/byoi/chatbots/{byoi_bot.id}/"' in body
    assert SECRET not in body


def test_it_lets_a_downgraded_account_switch_byoi_off(owner_client, owner, byoi_bot):
    from wizchat.models import Plan

    account = owner.membership.account
    account.plan = Plan.objects.get(slug="free")
    account.save()
    page = owner_client.get(settings_url(byoi_bot)).content.decode()
    assert "is not included in your Free plan" in page
    assert 'name="byoi-enabled"' in page
    owner_client.post(settings_url(byoi_bot), {})
    byoi_bot.refresh_from_db()
    assert not byoi_bot.byoi_enabled


def test_it_tells_a_downgraded_account_that_its_byoi_chatbot_is_suspended(owner_client, owner, byoi_bot):
    from wizchat.models import Plan

    account = owner.membership.account
    account.plan = Plan.objects.get(slug="free")
    account.save()
    assert "no longer includes it, so the chatbot cannot answer" in detail(owner_client, byoi_bot)


def test_it_refills_a_disabled_components_saved_values_when_switched_back_on(owner_client, byoi_bot):
    services.component_disable(byoi_bot, "vector_store")
    url = f"/byoi/chatbots/{byoi_bot.id}/panel/vector_store/"
    body = owner_client.post(url, {"byoi-enabled": "on", "vector_store-enabled": "on"}, **HX).content.decode()
    assert 'value="db.example.com"' in body
    assert "Stored — leave blank to keep it" in body
    assert SECRET not in body


def test_it_renders_a_test_connection_page_without_htmx(owner_client):
    response = owner_client.post("/byoi/test/llm/", llm_post())
    body = response.content.decode()
    assert "<html" in body
    assert f"/byoi/tests/{ConnectionTest.objects.get().id}/" in body
    assert SECRET not in body

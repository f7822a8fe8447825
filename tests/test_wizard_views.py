"""Create New Chatbot with the BYOI panel: HTMX toggles, validation, plan gating, saving components."""

import pytest

from byoi import services
from byoi.models import BYOIComponent, ConnectionTest, settings_fingerprint
from chatbots.models import Chatbot

NEW = "/dashboard/chatbots/new/"
SECRET = "s3cret-Pa55word-xyz"
HX = {"HTTP_HX_REQUEST": "true"}


def pg_fields(prefix, **overrides):
    data = {f"{prefix}-enabled": "on", f"{prefix}-host": "db.example.com", f"{prefix}-port": "5432",
            f"{prefix}-database": "vectors", f"{prefix}-username": "wizchat", f"{prefix}-password": SECRET,
            f"{prefix}-ssl_mode": "require"}
    data.update({f"{prefix}-{k}": v for k, v in overrides.items()})
    return data


def llm_fields(**overrides):
    data = {"llm-enabled": "on", "llm-endpoint": "https://llm.example.com/v1", "llm-api_key": SECRET,
            "llm-model": "gpt-4o"}
    data.update({f"llm-{k}": v for k, v in overrides.items()})
    return data


def create_data(**extra):
    return {"name": "Helpdesk", "instructions": "Be kind.", "byoi-enabled": "on", **extra}


# --- the page and its toggles --------------------------------------------------------------------------------


def test_it_shows_the_byoi_panel_collapsed_on_the_create_page(owner_client):
    body = owner_client.get(NEW).content.decode()
    assert "BYOI (Bring Your Own Infrastructure)" in body
    assert '<label for="id_byoi-enabled">Enable BYOI</label>' in body
    assert 'name="llm-enabled"' not in body
    assert "Create Chatbot" in body


def test_it_makes_enable_byoi_an_htmx_switch(owner_client):
    body = owner_client.get(NEW).content.decode()
    assert 'role="switch"' in body
    assert 'hx-post="/byoi/panel/"' in body
    assert 'hx-target="#byoi-panel"' in body


def test_it_expands_the_panel_with_one_switch_per_component(owner_client):
    body = owner_client.post("/byoi/panel/", {"byoi-enabled": "on"}, **HX).content.decode()
    for kind, label in [("llm", "LLM"), ("embeddings", "Embeddings"), ("vector_store", "Vector Store"),
                        ("graph", "FalkorDB"), ("conversations", "Conversations")]:
        assert f'<label for="id_{kind}-enabled"><span class="switch-title">{label}</span>' in body
    assert body.count('role="switch"') == 6
    assert "<html" not in body


def test_it_collapses_the_panel_when_byoi_is_switched_off(owner_client):
    body = owner_client.post("/byoi/panel/", {}, **HX).content.decode()
    assert 'id="byoi-panel"' in body
    assert 'name="llm-enabled"' not in body


def test_it_reveals_a_components_fields_when_its_switch_is_on(owner_client):
    body = owner_client.post("/byoi/panel/llm/", {"byoi-enabled": "on", "llm-enabled": "on"}, **HX).content.decode()
    for label in ["API Endpoint", "API Key", "Model Name"]:
        assert f">{label}</label>" in body
    assert 'name="llm-endpoint"' in body
    assert 'type="password" name="llm-api_key"' in body
    assert "Test Connection" in body
    assert 'hx-post="/byoi/test/llm/"' in body


@pytest.mark.parametrize("kind,labels", [
    ("embeddings", ["API Endpoint", "API Key", "Model Name", "Dimensions"]),
    ("vector_store", ["Host", "Port", "Database", "Username", "Password", "SSL Mode"]),
    ("graph", ["Host", "Port", "Password", "SSL"]),
    ("conversations", ["Host", "Port", "Database", "Username", "Password", "SSL Mode"]),
])
def test_it_labels_each_components_fields_with_the_specs_names(owner_client, kind, labels):
    body = owner_client.post(f"/byoi/panel/{kind}/", {f"{kind}-enabled": "on"}, **HX).content.decode()
    for label in labels:
        assert f">{label}</label>" in body


def test_it_fills_in_the_specs_defaults(owner_client):
    body = owner_client.post("/byoi/panel/vector_store/", {"vector_store-enabled": "on"}, **HX).content.decode()
    assert 'name="vector_store-port" value="5432"' in body
    assert '<option value="require" selected>require</option>' in body


def test_it_hides_a_components_fields_when_its_switch_is_off(owner_client):
    body = owner_client.post("/byoi/panel/llm/", {"byoi-enabled": "on"}, **HX).content.decode()
    assert 'name="llm-enabled"' in body
    assert 'name="llm-endpoint"' not in body


def test_it_keeps_typed_values_but_not_secrets_when_a_switch_is_re_rendered(owner_client):
    data = {"byoi-enabled": "on", **pg_fields("vector_store", host="kept.example.com")}
    body = owner_client.post("/byoi/panel/vector_store/", data, **HX).content.decode()
    assert 'value="kept.example.com"' in body
    assert SECRET not in body


def test_it_shows_no_errors_when_a_switch_is_flipped_on(owner_client):
    body = owner_client.post("/byoi/panel/llm/", {"llm-enabled": "on"}, **HX).content.decode()
    assert "field-error" not in body


def test_it_answers_404_to_an_unknown_component_kind(owner_client):
    assert owner_client.post("/byoi/panel/mainframe/", {}, **HX).status_code == 404


def test_it_requires_a_login_for_the_panel(client):
    assert client.post("/byoi/panel/", {"byoi-enabled": "on"}, **HX).status_code == 302


# --- without JavaScript ------------------------------------------------------------------------------------


def test_it_opens_the_panel_without_javascript_and_creates_nothing(owner_client):
    data = {"name": "Typed name", "byoi-enabled": "on", "llm-enabled": "on", "byoi-refresh": "1"}
    response = owner_client.post(NEW, data)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="llm-endpoint"' in body
    assert 'value="Typed name"' in body
    assert "field-error" not in body
    assert not Chatbot.objects.exists()


# --- Create Chatbot -----------------------------------------------------------------------------------------


def test_it_creates_a_chatbot_with_its_byoi_components(owner_client, owner):
    data = create_data(**llm_fields(), **pg_fields("vector_store"), **pg_fields("conversations", database="chats"))
    response = owner_client.post(NEW, data)
    bot = Chatbot.objects.get(name="Helpdesk")
    assert response.status_code == 302
    assert bot.byoi_enabled
    assert sorted(bot.components.values_list("kind", flat=True)) == ["conversations", "llm", "vector_store"]
    assert bot.components.get(kind="conversations").values["database"] == "chats"


def test_it_stores_the_secret_encrypted_and_not_in_the_plain_values(owner_client):
    owner_client.post(NEW, create_data(**llm_fields()))
    component = BYOIComponent.objects.get(kind="llm")
    assert component.secrets == {"api_key": SECRET}
    assert SECRET not in str(component.values)


def test_it_warns_that_a_component_saved_without_a_passing_test_is_untested(owner_client):
    response = owner_client.post(NEW, create_data(**llm_fields()), follow=True)
    body = response.content.decode()
    assert "Saved untested: LLM" in body
    assert BYOIComponent.objects.get(kind="llm").status == "untested"


def test_it_marks_a_component_ok_when_these_exact_settings_passed_a_test(owner_client, owner):
    values, secrets = services.component_validate(
        "llm", {"endpoint": "https://llm.example.com/v1", "model": "gpt-4o"}, {"api_key": SECRET}, None)
    ConnectionTest.objects.create(account=owner.membership.account, kind="llm", values=values, state="ok",
                                  fingerprint=settings_fingerprint("llm", values, secrets))
    body = owner_client.post(NEW, create_data(**llm_fields()), follow=True).content.decode()
    assert BYOIComponent.objects.get(kind="llm").status == "ok"
    assert "Saved untested" not in body


def test_it_keeps_the_component_untested_when_the_tested_settings_differ(owner_client, owner):
    values, secrets = services.component_validate(
        "llm", {"endpoint": "https://llm.example.com/v1", "model": "gpt-4o"}, {"api_key": "another-key"}, None)
    ConnectionTest.objects.create(account=owner.membership.account, kind="llm", values=values, state="ok",
                                  fingerprint=settings_fingerprint("llm", values, secrets))
    owner_client.post(NEW, create_data(**llm_fields()))
    assert BYOIComponent.objects.get(kind="llm").status == "untested"


def test_it_ignores_component_fields_when_byoi_is_off(owner_client):
    data = {"name": "Plain", **llm_fields()}
    owner_client.post(NEW, data)
    bot = Chatbot.objects.get(name="Plain")
    assert not bot.byoi_enabled
    assert not bot.components.exists()


def test_it_creates_nothing_when_a_component_field_is_missing(owner_client):
    response = owner_client.post(NEW, create_data(**llm_fields(model="")))
    assert response.status_code == 200
    assert "Model Name is required." in response.content.decode()
    assert not Chatbot.objects.exists()
    assert not BYOIComponent.objects.exists()


def test_it_shows_the_error_next_to_its_field(owner_client):
    body = owner_client.post(NEW, create_data(**llm_fields(endpoint="not a url"))).content.decode()
    field = body[body.index('name="llm-endpoint"'):]
    assert field.index('class="field-error"') < field.index('name="llm-api_key"')


def test_it_keeps_everything_typed_except_secrets_after_an_error(owner_client):
    data = create_data(**pg_fields("vector_store", database=""))
    body = owner_client.post(NEW, data).content.decode()
    assert 'value="Helpdesk"' in body
    assert "Be kind." in body
    assert 'value="db.example.com"' in body
    assert 'value="wizchat"' in body
    assert SECRET not in body


def test_it_says_a_typed_secret_is_kept_after_an_error(owner_client):
    body = owner_client.post(NEW, create_data(name="", **llm_fields())).content.decode()
    assert "Kept from your last attempt (never shown)." in body
    assert SECRET not in body


def test_it_shows_the_services_validation_message_next_to_the_field(owner_client):
    data = create_data(**pg_fields("vector_store", host="https://db.example.com/x"))
    body = owner_client.post(NEW, data).content.decode()
    assert "must be a host name or IP address only" in body
    assert not Chatbot.objects.exists()


def test_it_shows_chatbot_and_component_errors_together(owner_client):
    data = create_data(name="", **llm_fields(model=""))
    body = owner_client.post(NEW, data).content.decode()
    assert "Give your chatbot a name." in body
    assert body.count('class="field-error"') == 2


def test_it_creates_a_chatbot_with_byoi_enabled_and_no_custom_component(owner_client):
    owner_client.post(NEW, create_data())
    bot = Chatbot.objects.get(name="Helpdesk")
    assert bot.byoi_enabled
    assert not bot.components.exists()


# --- Free plan ----------------------------------------------------------------------------------------------


def test_it_shows_the_panel_locked_with_the_plans_that_include_byoi(client, free_user):
    client.force_login(free_user)
    body = client.get(NEW).content.decode()
    assert "BYOI (Bring Your Own Infrastructure)" in body
    assert "BYOI is available on the Pro, Pro+, Business, and Enterprise plans." in body
    assert 'name="byoi-enabled"' not in body


def test_it_refuses_byoi_fields_from_a_free_account(client, free_user):
    client.force_login(free_user)
    response = client.post(NEW, create_data(**llm_fields()))
    assert response.status_code == 200
    assert "BYOI is not included in the Free plan" in response.content.decode()
    assert not Chatbot.objects.exists()
    assert not BYOIComponent.objects.exists()


def test_it_refuses_a_component_switch_from_a_free_account_even_without_enable_byoi(client, free_user):
    client.force_login(free_user)
    data = {"name": "Sneaky", **llm_fields()}
    body = client.post(NEW, data).content.decode()
    assert "BYOI is not included in the Free plan" in body
    assert not Chatbot.objects.exists()


def test_it_creates_a_plain_chatbot_for_a_free_account(client, free_user):
    client.force_login(free_user)
    assert client.post(NEW, {"name": "Plain"}).status_code == 302
    assert Chatbot.objects.get(name="Plain").byoi_enabled is False


def test_it_renders_the_locked_panel_for_a_free_accounts_htmx_toggle(client, free_user):
    client.force_login(free_user)
    body = client.post("/byoi/panel/", {"byoi-enabled": "on"}, **HX).content.decode()
    assert "is not included in your Free plan" in body
    assert 'name="llm-enabled"' not in body

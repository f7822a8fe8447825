"""A Free account cannot turn BYOI on through any path; a downgraded one can always turn it off."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from byoi import services
from byoi.models import BYOIComponent, ConnectionTest
from wizchat.models import Plan
from wizchat.plans import PlanLimitReached

PG = {"host": "db.example.com", "database": "vectors", "username": "svc"}


@pytest.fixture
def free_chatbot(free_user):
    from chatbots.services import chatbot_create

    return chatbot_create(free_user.membership.account, name="Free bot")


@pytest.fixture
def downgraded(chatbot):
    """A chatbot whose disabled component was saved on Pro, before the account moved to Free."""
    component = services.component_save(chatbot, "vector_store", values=PG, secrets={"password": "pw-123456"},
                                        enabled=False)
    chatbot.account.plan = Plan.objects.get(slug="free")
    chatbot.account.save()
    return component


def test_it_refuses_to_save_a_component_on_free(free_chatbot):
    with pytest.raises(PlanLimitReached) as caught:
        services.component_save(free_chatbot, "vector_store", values=PG, secrets={"password": "pw"})
    assert "available on Pro" in str(caught.value)


def test_it_refuses_to_switch_byoi_on_for_a_free_chatbot(free_chatbot):
    with pytest.raises(PlanLimitReached):
        services.byoi_set_enabled(free_chatbot, True)


def test_it_refuses_test_connection_on_free(free_chatbot):
    with pytest.raises(PlanLimitReached):
        services.connection_test_start(free_chatbot.account, "vector_store", PG, {"password": "pw"})
    assert not ConnectionTest.objects.exists()


def test_it_refuses_to_enable_a_component_after_a_downgrade(downgraded):
    with pytest.raises(PlanLimitReached):
        services.component_set_enabled(downgraded, True)


def test_it_lets_a_downgraded_chatbot_disable_byoi(downgraded):
    chatbot = downgraded.chatbot
    chatbot.byoi_enabled = True
    chatbot.save()
    services.byoi_set_enabled(chatbot, False)
    chatbot.refresh_from_db()
    assert chatbot.byoi_enabled is False


def test_it_refuses_an_enabled_component_in_model_validation(downgraded):
    downgraded.enabled = True
    with pytest.raises(ValidationError) as caught:
        downgraded.full_clean()
    assert "enabled" in caught.value.message_dict


def test_it_refuses_enabling_in_the_component_admin(downgraded, admin_client):
    url = reverse("admin:byoi_byoicomponent_change", args=[downgraded.pk])
    response = admin_client.post(url, {"enabled": "on"})
    assert (response.status_code, BYOIComponent.objects.get(pk=downgraded.pk).enabled) == (200, False)


def test_it_says_why_the_admin_refused(downgraded, admin_client):
    url = reverse("admin:byoi_byoicomponent_change", args=[downgraded.pk])
    response = admin_client.post(url, {"enabled": "on"})
    assert "BYOI is not included in the Free plan" in response.content.decode()


def test_it_refuses_enabling_through_the_chatbot_admin_inline(downgraded, admin_client):
    chatbot = downgraded.chatbot
    url = reverse("admin:chatbots_chatbot_change", args=[chatbot.pk])
    page = admin_client.get(url)
    data = _form_data(page)
    data["components-0-enabled"] = "on"
    admin_client.post(url, data)
    assert BYOIComponent.objects.get(pk=downgraded.pk).enabled is False


def _form_data(response) -> dict:
    """The change form's current values, as the browser would post them back."""
    form = response.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items()
            if name in form.fields and not isinstance(value, bool)}
    data.update({name: "on" for name, value in form.initial.items() if name in form.fields and value is True})
    for formset in response.context["inline_admin_formsets"]:
        fs = formset.formset
        for key, value in fs.management_form.initial.items():
            data[f"{fs.prefix}-{key}"] = value
        for i, f in enumerate(fs.forms):
            data[f"{fs.prefix}-{i}-id"] = f.instance.pk
            data[f"{fs.prefix}-{i}-chatbot"] = f.instance.chatbot_id
            if f.instance.enabled:
                data[f"{fs.prefix}-{i}-enabled"] = "on"
    return data


def test_it_refuses_switching_byoi_on_in_the_chatbot_admin_on_free(free_chatbot, admin_client):
    url = reverse("admin:chatbots_chatbot_change", args=[free_chatbot.pk])
    data = _form_data(admin_client.get(url))
    data["byoi_enabled"] = "on"
    admin_client.post(url, data)
    free_chatbot.refresh_from_db()
    assert free_chatbot.byoi_enabled is False


def test_it_lets_the_chatbot_admin_switch_byoi_on_for_pro(chatbot, admin_client):
    url = reverse("admin:chatbots_chatbot_change", args=[chatbot.pk])
    data = _form_data(admin_client.get(url))
    data["byoi_enabled"] = "on"
    admin_client.post(url, data)
    chatbot.refresh_from_db()
    assert chatbot.byoi_enabled is True

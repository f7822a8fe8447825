"""The BYOI admin: status visible, secrets never shown, re-test action, read-only history."""

import pytest
from django.urls import reverse

from byoi import services
from byoi.models import AuditEvent, BYOIComponent, ConnectionTest

PASSWORD = "admin-must-not-see-this-pw"
PG = {"host": "db.example.com", "database": "vectors", "username": "svc"}


@pytest.fixture
def component(chatbot):
    return services.component_save(chatbot, "vector_store", values=PG, secrets={"password": PASSWORD})


def test_it_lists_components_with_their_status(component, admin_client):
    html = admin_client.get(reverse("admin:byoi_byoicomponent_changelist")).content.decode()
    assert "Untested" in html and "Vector Store" in html


def test_it_shows_a_set_secret_masked_on_the_component_page(component, admin_client):
    html = admin_client.get(reverse("admin:byoi_byoicomponent_change", args=[component.pk])).content.decode()
    assert "••••• (set)" in html and PASSWORD not in html


def test_it_shows_an_unset_optional_secret_as_not_set(chatbot, admin_client):
    graph = services.component_save(chatbot, "graph", values={"host": "g.example.com"}, secrets={})
    html = admin_client.get(reverse("admin:byoi_byoicomponent_change", args=[graph.pk])).content.decode()
    assert "Password: (not set)" in html


def test_it_shows_the_components_inline_on_the_chatbot_page_without_secrets(component, admin_client):
    html = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[component.chatbot_id])).content.decode()
    assert "db.example.com:5432/vectors" in html and "••••• (set)" in html and PASSWORD not in html


def test_it_never_offers_the_encrypted_field_as_a_form_input(component, admin_client):
    html = admin_client.get(reverse("admin:byoi_byoicomponent_change", args=[component.pk])).content.decode()
    assert 'name="secret_values"' not in html


def test_it_reruns_test_connection_from_the_changelist(component, admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(reverse("admin:byoi_byoicomponent_changelist"),
                          {"action": "rerun_test_connection", "_selected_action": [component.pk]})
    assert ConnectionTest.objects.filter(component=component).count() == 1


def test_it_saves_an_admins_change_through_the_service(component, admin_client):
    component.enabled = False
    component.save()
    admin_client.post(reverse("admin:byoi_byoicomponent_change", args=[component.pk]), {"enabled": "on"})
    event = AuditEvent.objects.filter(action="byoi.component_enabled").first()
    assert (BYOIComponent.objects.get(pk=component.pk).enabled, event.actor.is_superuser) == (True, True)


def test_it_never_shows_a_tests_candidate_secret(chatbot, admin_client):
    test = services.connection_test_start(chatbot.account, "vector_store", PG, {"password": PASSWORD})
    html = admin_client.get(reverse("admin:byoi_connectiontest_change", args=[test.pk])).content.decode()
    assert "db.example.com" in html and PASSWORD not in html


def test_it_keeps_connection_tests_read_only(chatbot, admin_client):
    test = services.connection_test_start(chatbot.account, "vector_store", PG, {"password": PASSWORD})
    admin_client.post(reverse("admin:byoi_connectiontest_change", args=[test.pk]), {"state": "ok"})
    assert ConnectionTest.objects.get(pk=test.pk).state == "queued"


def test_it_shows_audit_events_without_secrets(component, admin_client):
    event = AuditEvent.objects.get(action="byoi.component_saved")
    html = admin_client.get(reverse("admin:byoi_auditevent_change", args=[event.pk])).content.decode()
    assert "byoi.component_saved" in html and PASSWORD not in html


def test_it_keeps_audit_events_read_only(component, admin_client):
    event = AuditEvent.objects.get(action="byoi.component_saved")
    response = admin_client.post(reverse("admin:byoi_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert (response.status_code, AuditEvent.objects.filter(pk=event.pk).exists()) == (403, True)


def test_it_keeps_secrets_out_of_a_components_repr(component):
    assert PASSWORD not in repr(component) + str(component)


def test_it_enables_a_component_from_the_chatbot_inline(component, admin_client):
    from tests.test_plan_gating_byoi import _form_data

    component.enabled = False
    component.save()
    url = reverse("admin:chatbots_chatbot_change", args=[component.chatbot_id])
    data = _form_data(admin_client.get(url))
    data["components-0-enabled"] = "on"
    admin_client.post(url, data)
    assert BYOIComponent.objects.get(pk=component.pk).enabled is True


def test_it_keeps_secrets_out_of_a_connection_tests_repr(chatbot):
    test = services.connection_test_start(chatbot.account, "vector_store", PG, {"password": PASSWORD})
    assert PASSWORD not in repr(test) + str(test)


def test_it_audits_a_component_deleted_in_the_admin(component, admin_client):
    admin_client.post(reverse("admin:byoi_byoicomponent_delete", args=[component.pk]), {"post": "yes"})
    assert (BYOIComponent.objects.filter(pk=component.pk).exists(),
            AuditEvent.objects.filter(action="byoi.component_deleted").count()) == (False, 1)

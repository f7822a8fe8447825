import pytest
from django.contrib.auth import get_user_model

from wizchat.models import Plan


@pytest.fixture
def staff_client(client, db):
    admin = get_user_model().objects.create_superuser("staff@example.com", "staff@example.com", "staff pass 123!")
    client.force_login(admin)
    return client


def test_it_lets_staff_change_an_accounts_plan(staff_client, owner):
    account = owner.membership.account
    enterprise = Plan.objects.get(slug="enterprise")
    page = staff_client.get(f"/admin/wizchat/account/{account.pk}/change/")
    assert page.status_code == 200
    response = staff_client.post(
        f"/admin/wizchat/account/{account.pk}/change/",
        {
            "name": account.name,
            "plan": enterprise.pk,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-id": owner.membership.pk,
            "memberships-0-account": account.pk,
            "memberships-0-user": owner.pk,
            "memberships-0-role": "owner",
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.plan == enterprise


def test_it_searches_and_filters_chatbots(staff_client, chatbot):
    assert "Support bot" in staff_client.get("/admin/chatbots/chatbot/?q=Support").content.decode()
    assert "Support bot" not in staff_client.get("/admin/chatbots/chatbot/?q=nothing-like-it").content.decode()


def test_it_keeps_customers_out_of_the_admin(owner_client):
    assert owner_client.get("/admin/").status_code == 302

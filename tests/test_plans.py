import pytest

from chatbots.services import chatbot_create
from wizchat.models import Plan
from wizchat.plans import PlanLimitReached, plan_require_byoi


def test_it_seeds_the_five_plans_in_order(db):
    assert list(Plan.objects.values_list("slug", flat=True)) == ["free", "pro", "pro-plus", "business", "enterprise"]


def test_it_allows_byoi_on_every_plan_but_free(db):
    assert list(Plan.objects.filter(byoi_allowed=False).values_list("slug", flat=True)) == ["free"]


def test_it_refuses_byoi_for_a_free_account_naming_the_plans_that_include_it(free_user):
    with pytest.raises(PlanLimitReached) as error:
        plan_require_byoi(free_user.membership.account)
    assert "Pro, Pro+, Business, Enterprise" in str(error.value)


def test_it_enforces_the_chatbot_limit_in_the_service(free_user):
    account = free_user.membership.account
    chatbot_create(account, name="First")
    with pytest.raises(PlanLimitReached, match="allows 1 chatbot"):
        chatbot_create(account, name="Second")
    assert account.chatbots.count() == 1


def test_it_shows_the_limit_message_on_the_form_and_keeps_the_input(client, free_user):
    chatbot_create(free_user.membership.account, name="First")
    client.force_login(free_user)
    response = client.post("/dashboard/chatbots/new/", {"name": "Second bot", "instructions": "Hi"})
    assert response.status_code == 200
    assert "allows 1 chatbot" in response.content.decode()
    assert 'value="Second bot"' in response.content.decode()
    assert free_user.membership.account.chatbots.count() == 1

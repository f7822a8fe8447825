import pytest

from chatbots.models import Chatbot


def test_it_creates_a_chatbot_and_lists_it(owner_client, owner):
    response = owner_client.post("/dashboard/chatbots/new/", {"name": "Helpdesk", "instructions": "Be kind."})
    bot = Chatbot.objects.get(name="Helpdesk")
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/chatbots/{bot.id}/"
    assert bot.account == owner.membership.account
    assert "Helpdesk" in owner_client.get("/dashboard/chatbots/").content.decode()


def test_it_refuses_an_empty_name(owner_client):
    response = owner_client.post("/dashboard/chatbots/new/", {"name": "   ", "instructions": "kept text"})
    body = response.content.decode()
    assert "Give your chatbot a name." in body
    assert "kept text" in body
    assert not Chatbot.objects.exists()


def test_it_refuses_a_too_long_name(owner_client):
    response = owner_client.post("/dashboard/chatbots/new/", {"name": "x" * 101})
    assert "100 characters or fewer" in response.content.decode()
    assert not Chatbot.objects.exists()


def test_it_edits_a_chatbot(owner_client, chatbot):
    owner_client.post(f"/dashboard/chatbots/{chatbot.id}/edit/", {"name": "Renamed", "instructions": "New"})
    chatbot.refresh_from_db()
    assert (chatbot.name, chatbot.instructions) == ("Renamed", "New")


def test_it_asks_for_confirmation_before_deleting(owner_client, chatbot):
    response = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/delete/")
    assert "Delete chatbot" in response.content.decode()
    assert Chatbot.objects.filter(pk=chatbot.pk).exists()
    owner_client.post(f"/dashboard/chatbots/{chatbot.id}/delete/")
    assert not Chatbot.objects.filter(pk=chatbot.pk).exists()


def test_it_lets_a_teammate_see_the_accounts_chatbots(client, teammate, chatbot):
    client.force_login(teammate)
    assert client.get(f"/dashboard/chatbots/{chatbot.id}/").status_code == 200


@pytest.mark.parametrize("suffix", ["", "edit/", "delete/"])
def test_it_answers_404_to_another_account_for_get(client, outsider, chatbot, suffix):
    client.force_login(outsider)
    assert client.get(f"/dashboard/chatbots/{chatbot.id}/{suffix}").status_code == 404


def test_it_answers_404_to_another_account_trying_to_edit_or_delete(client, outsider, chatbot):
    client.force_login(outsider)
    assert client.post(f"/dashboard/chatbots/{chatbot.id}/edit/", {"name": "pwned"}).status_code == 404
    assert client.post(f"/dashboard/chatbots/{chatbot.id}/delete/").status_code == 404
    chatbot.refresh_from_db()
    assert chatbot.name == "Support bot"


def test_it_does_not_list_other_accounts_chatbots(client, outsider, chatbot):
    client.force_login(outsider)
    assert "Support bot" not in client.get("/dashboard/chatbots/").content.decode()

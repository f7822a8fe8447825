from django.contrib.auth import get_user_model

from wizchat.models import Account


def test_it_signs_up_a_user_into_a_new_free_account_and_logs_them_in(client, db):
    response = client.post("/signup/", {"email": "new@example.com", "team_name": "Newco",
                                        "password": "a long enough passphrase"})
    assert response.status_code == 302
    user = get_user_model().objects.get(email="new@example.com")
    assert user.membership.account.name == "Newco"
    assert user.membership.account.plan.slug == "free"
    assert client.get("/dashboard/chatbots/").status_code == 200


def test_it_refuses_a_taken_email_and_keeps_what_was_typed(client, owner):
    response = client.post("/signup/", {"email": "owner@example.com", "team_name": "Dup Inc",
                                        "password": "a long enough passphrase"})
    body = response.content.decode()
    assert "already exists" in body
    assert 'value="Dup Inc"' in body
    assert "a long enough passphrase" not in body
    assert Account.objects.count() == 1


def test_it_refuses_a_weak_password_with_the_reason(client, db):
    response = client.post("/signup/", {"email": "weak@example.com", "password": "12345"})
    assert "too short" in response.content.decode()
    assert not get_user_model().objects.filter(email="weak@example.com").exists()


def test_it_logs_in_and_out(client, owner):
    response = client.post("/login/", {"username": "owner@example.com", "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get("/dashboard/chatbots/").status_code == 200
    client.post("/logout/")
    assert client.get("/dashboard/chatbots/").status_code == 302


def test_it_requires_login_for_dashboard_pages(client, chatbot):
    for url in ["/dashboard/chatbots/", "/dashboard/chatbots/new/", f"/dashboard/chatbots/{chatbot.id}/",
                f"/dashboard/chatbots/{chatbot.id}/edit/", f"/dashboard/chatbots/{chatbot.id}/delete/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")

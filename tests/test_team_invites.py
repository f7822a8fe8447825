"""Invite links, end to end: an owner or admin creates one (shown once, stored as a hash), a visitor signs up with
it into the team, a logged-in user without a team joins; used, expired, revoked and garbled links get a page that
says why, never a 500."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from tests import team_fixtures
from tests.team_fixtures import create_link, join, logged_in
from wizchat import team
from wizchat.models import Invite, Membership

team_admin, fast_hashing = team_fixtures.team_admin, team_fixtures.fast_hashing  # tests/team_fixtures.py
pytestmark = pytest.mark.usefixtures("fast_hashing")
PASSWORD = "a long enough passphrase"


def sign_up(path, email="new@example.com"):
    client = Client()
    return client, client.post(path, {"email": email, "password": PASSWORD})


def test_it_shows_a_new_link_once_and_stores_only_its_hash(owner):
    client = logged_in(owner)
    path = create_link(client)
    token = path.split("/")[2]
    invite = Invite.objects.get()
    assert invite.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(Invite.objects.values_list().get())
    assert invite.expires - timezone.now() > timedelta(days=6, hours=23)
    page = client.get("/account/team/").content.decode()
    assert token not in page
    assert "Pending invites" in page


def test_a_visitor_signs_up_with_the_link_and_joins_the_team_with_its_role(owner, team_admin):
    path = create_link(logged_in(team_admin), role="admin")
    page = Client().get(path).content.decode()
    assert "Join Acme" in page and "as an admin" in page
    client, response = sign_up(path)
    assert response.status_code == 302
    user = get_user_model().objects.get(email="new@example.com")
    assert (user.membership.account, user.membership.role) == (owner.membership.account, "admin")
    assert client.get("/dashboard/chatbots/").status_code == 200
    invite = Invite.objects.get()
    assert invite.used is not None and invite.used_by == user


def test_the_new_member_sees_the_teams_chatbots(owner, chatbot):
    client, _ = sign_up(create_link(logged_in(owner)))
    assert "Support bot" in client.get("/dashboard/chatbots/").content.decode()


def test_a_link_works_once(owner):
    path = create_link(logged_in(owner))
    sign_up(path)
    _, response = sign_up(path, email="second@example.com")
    assert response.status_code == 410
    assert "already used" in response.content.decode()
    assert not get_user_model().objects.filter(email="second@example.com").exists()


def test_an_expired_link_is_refused(owner):
    path = create_link(logged_in(owner))
    Invite.objects.update(expires=timezone.now() - timedelta(minutes=1))
    _, response = sign_up(path)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not get_user_model().objects.filter(email="new@example.com").exists()


def test_a_revoked_link_is_refused(owner):
    client = logged_in(owner)
    path = create_link(client)
    invite = Invite.objects.get()
    assert client.post(f"/account/team/invites/{invite.id}/revoke/").status_code == 302
    _, response = sign_up(path)
    assert response.status_code == 410
    assert "revoked" in response.content.decode()
    assert "Pending invites" not in client.get("/account/team/").content.decode()


@pytest.mark.parametrize("token", ["nope", "x" * 43, "%27%22%3Cb%3E", "a" * 300, "\u00e9" * 43])
def test_a_garbled_or_unknown_link_gets_a_clear_page(db, token):
    response = Client().get(f"/invite/{token}/")
    assert response.status_code == 404
    assert "This invite link is not valid" in response.content.decode()
    assert Client().post(f"/invite/{token}/", {"email": "x@example.com", "password": PASSWORD}).status_code == 404


def test_a_logged_in_user_without_a_team_joins(owner):
    path = create_link(logged_in(owner))
    loner = get_user_model().objects.create_user("loner@example.com", "loner@example.com", PASSWORD)
    client = logged_in(loner)
    assert "Join Acme</button>" in client.get(path).content.decode()
    assert client.post(path).status_code == 302
    loner.refresh_from_db()
    assert loner.membership.account == owner.membership.account
    assert loner.membership.role == "member"


def test_a_user_in_another_team_is_told_one_log_in_is_one_team(owner, outsider):
    path = create_link(logged_in(owner))
    client = logged_in(outsider)
    body = client.get(path).content.decode()
    assert "You are already in Other Co: a WizChat log-in belongs to one team" in body
    client.post(path)
    outsider.refresh_from_db()
    assert outsider.membership.account.name == "Other Co"
    assert Invite.objects.get().used is None


def test_the_sign_up_form_refuses_a_taken_email_and_keeps_the_link_usable(owner, outsider):
    path = create_link(logged_in(owner))
    _, response = sign_up(path, email="outsider@example.com")
    assert "already exists" in response.content.decode()
    assert Invite.objects.get().used is None


def test_an_admin_cannot_invite_an_owner(team_admin):
    with pytest.raises(team.TeamRefused):
        team.invite_create(team_admin.membership, "owner")
    body = logged_in(team_admin).post("/account/team/invites/", {"role": "owner"}).content.decode()
    assert "Only an owner of Acme can invite an owner" in body
    assert not Invite.objects.exists()


def test_an_owner_invites_an_owner(owner):
    path = create_link(logged_in(owner), role="owner")
    sign_up(path)
    assert get_user_model().objects.get(email="new@example.com").membership.role == "owner"


def test_a_member_cannot_invite(owner, teammate):
    response = logged_in(teammate).post("/account/team/invites/", {"role": "member"})
    assert response.status_code == 403
    assert not Invite.objects.exists()


def test_another_teams_invite_cannot_be_revoked(owner, outsider):
    create_link(logged_in(owner))
    invite = Invite.objects.get()
    assert logged_in(outsider).post(f"/account/team/invites/{invite.id}/revoke/").status_code == 404
    invite.refresh_from_db()
    assert invite.revoked is None


def test_accepting_twice_at_once_joins_one_user_only(owner):
    """The service locks the invite: the second acceptance sees it used."""
    _, token = team.invite_create(owner.membership, "member")
    first = get_user_model().objects.create_user("a@example.com", "a@example.com", PASSWORD)
    team.invite_accept(token, first)
    with pytest.raises(team.InviteInvalid):
        team.invite_signup(token, email="b@example.com", password=PASSWORD)
    assert Membership.objects.filter(account=owner.membership.account).count() == 2


def test_a_removed_user_may_accept_an_invite_to_another_team(owner, outsider):
    someone = join(outsider.membership.account, "someone@example.com", "member")
    team.member_remove(outsider.membership, someone.membership)
    someone.refresh_from_db()
    _, token = team.invite_create(owner.membership, "member")
    response = logged_in(someone).post(f"/invite/{token}/")
    assert response.status_code == 302
    someone.refresh_from_db()
    assert someone.membership.account == owner.membership.account

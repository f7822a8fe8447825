"""Staff in the admin keep to the team's rules (wizchat.team.owners_keep, the team page's own rule): demoting,
deleting or moving a team's last owner is refused with the team page's message and nothing is saved, through the
membership admin (change, delete, "delete selected") and the account's membership inline; with another owner it is
allowed. Staff's changes are in the team's audit trail, marked as staff's."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests import team_fixtures
from tests.team_fixtures import join
from wizchat.models import Membership, TeamEvent

fast_hashing = team_fixtures.fast_hashing  # a fixture of tests/team_fixtures.py
pytestmark = pytest.mark.usefixtures("fast_hashing")
LAST_OWNER = "owner@example.com is the last owner of Acme, and a team always keeps an owner"
LAST_OWNER_REMOVED = "owner@example.com is the last owner of Acme and cannot be removed"


@pytest.fixture
def staff_client(db):
    staff = get_user_model().objects.create_superuser("staff@example.com", "staff@example.com", "staff pass 123!")
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def second_owner(owner):
    return join(owner.membership.account, "second@example.com", "owner")


def role_of(user) -> str:
    return Membership.objects.get(user=user).role


def change_membership(client, whom, **data):
    membership = whom.membership
    form = {"user": whom.pk, "account": membership.account_id, "role": membership.role, **data}
    return client.post(f"/admin/wizchat/membership/{membership.pk}/change/", form, follow=True)


def delete_membership(client, user):
    return client.post(f"/admin/wizchat/membership/{user.membership.pk}/delete/", {"post": "yes"}, follow=True)


def delete_selected(client, *users):
    return client.post("/admin/wizchat/membership/", {
        "action": "delete_selected", "post": "yes", "_selected_action": [u.membership.pk for u in users]},
        follow=True)


def save_inline(client, account, rows, new=()):
    """The account's change form with its membership rows: (user, role, delete) for each existing row, (user, role)
    for each added one."""
    data = {"name": account.name, "plan": account.plan_id,
            "memberships-TOTAL_FORMS": str(len(rows) + len(new)), "memberships-INITIAL_FORMS": str(len(rows)),
            "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000"}
    for i, (user, role, delete) in enumerate(rows):
        data.update({f"memberships-{i}-id": user.membership.pk, f"memberships-{i}-account": account.pk,
                     f"memberships-{i}-user": user.pk, f"memberships-{i}-role": role})
        if delete:
            data[f"memberships-{i}-DELETE"] = "on"
    for i, (user, role) in enumerate(new, start=len(rows)):
        data.update({f"memberships-{i}-account": account.pk, f"memberships-{i}-user": user.pk,
                     f"memberships-{i}-role": role})
    return client.post(f"/admin/wizchat/account/{account.pk}/change/", data, follow=True)


def staff_events():
    return [(e.action, e.actor_email, e.target_email, e.previous_role, e.role, e.by_staff)
            for e in TeamEvent.objects.exclude(action="created").order_by("id")]  # after each team's start


# --- the membership admin -----------------------------------------------------------------------------------

def test_demoting_the_last_owner_is_refused_with_the_message(staff_client, owner):
    body = change_membership(staff_client, owner, role="admin").content.decode()
    assert LAST_OWNER in body
    assert role_of(owner) == "owner"
    assert staff_events() == []


def test_demoting_an_owner_is_allowed_with_another_owner(staff_client, owner, second_owner):
    response = change_membership(staff_client, owner, role="member")
    assert response.redirect_chain[-1][0] == "/admin/wizchat/membership/"
    assert role_of(owner) == "member"
    assert staff_events() == [("role_changed", "staff@example.com", "owner@example.com", "owner", "member", True)]


def test_moving_the_last_owner_to_another_team_is_refused(staff_client, owner, outsider):
    body = change_membership(staff_client, owner, account=outsider.membership.account_id).content.decode()
    assert LAST_OWNER_REMOVED in body
    assert Membership.objects.get(user=owner).account == owner.membership.account


def test_a_membership_cannot_be_handed_to_another_user(staff_client, owner, second_owner):
    loner = get_user_model().objects.create_user("loner@example.com", "loner@example.com", "x")
    body = change_membership(staff_client, second_owner, user=loner.pk).content.decode()
    assert "A membership cannot be handed to another user" in body
    assert Membership.objects.get(pk=second_owner.membership.pk).user == second_owner


def test_deleting_the_last_owner_is_refused_with_the_message(staff_client, owner):
    confirm = staff_client.get(f"/admin/wizchat/membership/{owner.membership.pk}/delete/", follow=True)
    assert f"Nothing deleted: {LAST_OWNER_REMOVED}" in confirm.content.decode()
    assert confirm.redirect_chain[-1][0] == f"/admin/wizchat/membership/{owner.membership.pk}/change/"
    assert f"Nothing deleted: {LAST_OWNER_REMOVED}" in delete_membership(staff_client, owner).content.decode()
    assert Membership.objects.filter(user=owner).exists()
    assert staff_events() == []


def test_deleting_an_owner_is_allowed_with_another_owner(staff_client, owner, second_owner):
    delete_membership(staff_client, owner)
    assert not Membership.objects.filter(user=owner).exists()
    assert staff_events() == [("removed", "staff@example.com", "owner@example.com", "owner", "", True)]


def test_delete_selected_refuses_to_remove_every_owner(staff_client, owner, second_owner, teammate):
    body = delete_selected(staff_client, owner, second_owner, teammate).content.decode()
    assert ("Nothing deleted: owner@example.com, second@example.com are the last owners of Acme and cannot all be "
            "removed") in body
    assert Membership.objects.filter(account=owner.membership.account).count() == 3
    assert staff_events() == []


def test_delete_selected_removes_an_owner_while_another_remains(staff_client, owner, second_owner, teammate):
    body = delete_selected(staff_client, owner, teammate).content.decode()
    assert "Successfully deleted 2" in body
    assert list(Membership.objects.values_list("user__email", flat=True)) == ["second@example.com"]
    assert sorted(staff_events()) == [("removed", "staff@example.com", "mate@example.com", "member", "", True),
                                      ("removed", "staff@example.com", "owner@example.com", "owner", "", True)]


def test_staff_adding_a_membership_is_recorded(staff_client, owner):
    loner = get_user_model().objects.create_user("loner@example.com", "loner@example.com", "x")
    staff_client.post("/admin/wizchat/membership/add/",
                      {"user": loner.pk, "account": owner.membership.account_id, "role": "admin"})
    assert role_of(loner) == "admin"
    assert staff_events() == [("added", "staff@example.com", "loner@example.com", "", "admin", True)]
    page = Client()
    page.force_login(owner)
    assert "staff@example.com (WizChat staff)" in page.get("/account/team/").content.decode()


# --- the account's membership inline ------------------------------------------------------------------------

def test_the_inline_refuses_to_demote_the_last_owner(staff_client, owner, teammate):
    account = owner.membership.account
    body = save_inline(staff_client, account, [(owner, "admin", False), (teammate, "member", False)]).content.decode()
    assert LAST_OWNER in body
    assert role_of(owner) == "owner"
    assert staff_events() == []


def test_the_inline_refuses_to_delete_the_last_owner(staff_client, owner, teammate):
    account = owner.membership.account
    body = save_inline(staff_client, account, [(owner, "owner", True), (teammate, "admin", False)]).content.decode()
    assert LAST_OWNER_REMOVED in body
    assert (role_of(owner), role_of(teammate)) == ("owner", "member")


def test_the_inline_demotes_an_owner_while_another_remains(staff_client, owner, second_owner):
    account = owner.membership.account
    response = save_inline(staff_client, account, [(owner, "member", False), (second_owner, "owner", False)])
    assert response.redirect_chain[-1][0] == "/admin/wizchat/account/"
    assert role_of(owner) == "member"
    assert staff_events() == [("role_changed", "staff@example.com", "owner@example.com", "owner", "member", True)]


def test_the_inline_hands_ownership_over_in_one_save(staff_client, owner, teammate):
    account = owner.membership.account
    save_inline(staff_client, account, [(owner, "member", False), (teammate, "owner", False)])
    assert (role_of(owner), role_of(teammate)) == ("member", "owner")


def test_the_inline_deletes_an_owner_while_another_remains(staff_client, owner, second_owner):
    account = owner.membership.account
    save_inline(staff_client, account, [(owner, "owner", True), (second_owner, "owner", False)])
    assert not Membership.objects.filter(user=owner).exists()
    assert staff_events() == [("removed", "staff@example.com", "owner@example.com", "owner", "", True)]

"""Changing roles and removing people: owners and admins change roles among admin and member, only an owner makes,
unmakes or removes an owner, and a team always keeps an owner. A removed user keeps their log-in, without a team."""

import pytest

from tests import team_fixtures
from tests.team_fixtures import join, logged_in
from wizchat import team
from wizchat.models import Membership

team_admin, fast_hashing = team_fixtures.team_admin, team_fixtures.fast_hashing  # tests/team_fixtures.py
pytestmark = pytest.mark.usefixtures("fast_hashing")


def role_of(user) -> str:
    return Membership.objects.get(user=user).role


def set_role(by, whom, role):
    return logged_in(by).post(f"/account/team/members/{whom.membership.public_id}/role/", {"role": role},
                              follow=True)


def remove(by, whom):
    return logged_in(by).post(f"/account/team/members/{whom.membership.public_id}/remove/", follow=True)


def test_an_admin_makes_a_member_an_admin_and_back(team_admin, teammate):
    body = set_role(team_admin, teammate, "admin").content.decode()
    assert role_of(teammate) == "admin"
    assert "mate@example.com is now an admin." in body
    set_role(team_admin, teammate, "member")
    assert role_of(teammate) == "member"


def test_only_an_owner_makes_an_owner(owner, team_admin, teammate):
    body = set_role(team_admin, teammate, "owner").content.decode()
    assert "Only an owner of Acme can make someone an owner." in body
    assert role_of(teammate) == "member"
    set_role(owner, teammate, "owner")
    assert role_of(teammate) == "owner"


def test_an_admin_cannot_demote_or_remove_an_owner(owner, team_admin):
    join(owner.membership.account, "second@example.com", "owner")
    assert "Only an owner of Acme can change an owner&#x27;s role." in set_role(team_admin, owner,
                                                                               "member").content.decode()
    assert "Only an owner of Acme can remove an owner." in remove(team_admin, owner).content.decode()
    assert role_of(owner) == "owner"


def test_the_last_owner_cannot_be_demoted(owner, team_admin):
    body = set_role(owner, owner, "admin").content.decode()
    assert "You are the last owner of Acme, and a team always keeps an owner: make someone else an owner first." in body
    assert role_of(owner) == "owner"


def test_the_last_owner_cannot_remove_themselves(owner):
    body = remove(owner, owner).content.decode()
    assert "You are the last owner of Acme and cannot be removed" in body
    assert Membership.objects.filter(user=owner).exists()


def test_an_owner_steps_down_once_there_is_another(owner):
    second = join(owner.membership.account, "second@example.com", "owner")
    set_role(owner, owner, "member")
    assert role_of(owner) == "member"
    body = set_role(second, second, "admin").content.decode()
    assert "You are the last owner" in body


def test_the_service_refuses_to_demote_the_last_owner_whoever_asks(owner):
    with pytest.raises(team.TeamRefused):
        team.member_set_role(owner.membership, owner.membership, "member")
    with pytest.raises(team.TeamRefused):
        team.member_remove(owner.membership, owner.membership)


def test_an_admin_removes_a_member_who_then_has_no_team(team_admin, teammate, chatbot):
    body = remove(team_admin, teammate).content.decode()
    assert "mate@example.com is no longer in Acme." in body
    assert not Membership.objects.filter(user=teammate).exists()
    client = logged_in(teammate)
    response = client.get(f"/dashboard/chatbots/{chatbot.id}/")
    assert response.status_code == 404
    assert "You are not in a team" in client.get("/dashboard/chatbots/").content.decode()


def test_a_removed_user_starts_a_team_of_their_own(team_admin, teammate):
    remove(team_admin, teammate)
    client = logged_in(teammate)
    assert client.post("/account/team/start/", {"team_name": "Solo"}).status_code == 302
    membership = Membership.objects.get(user=teammate)
    assert (membership.account.name, membership.role, membership.account.plan.slug) == ("Solo", "owner", "free")


def test_a_user_in_a_team_cannot_start_another(owner):
    logged_in(owner).post("/account/team/start/", {"team_name": "Second"})
    assert Membership.objects.get(user=owner).account.name == "Acme"


def test_an_admin_leaves_the_team(team_admin):
    response = remove(team_admin, team_admin)
    assert "You left Acme." in response.content.decode()
    assert not Membership.objects.filter(user=team_admin).exists()


def test_the_remove_page_asks_first(team_admin, teammate):
    body = logged_in(team_admin).get(f"/account/team/members/{teammate.membership.public_id}/remove/").content.decode()
    assert "Remove mate@example.com?" in body
    assert Membership.objects.filter(user=teammate).exists()


def test_a_member_cannot_change_roles_or_remove(owner, team_admin, teammate):
    client = logged_in(teammate)
    url = f"/account/team/members/{team_admin.membership.public_id}"
    assert client.post(f"{url}/role/", {"role": "member"}).status_code == 403
    assert client.post(f"{url}/remove/").status_code == 403
    assert client.post(f"/account/team/members/{teammate.membership.public_id}/role/",
                       {"role": "admin"}).status_code == 403
    assert (role_of(team_admin), role_of(teammate)) == ("admin", "member")


def test_another_teams_member_is_404(owner, outsider):
    url = f"/account/team/members/{owner.membership.public_id}"
    assert logged_in(outsider).post(f"{url}/role/", {"role": "member"}).status_code == 404
    assert logged_in(outsider).post(f"{url}/remove/").status_code == 404
    assert role_of(owner) == "owner"


def test_an_unknown_role_is_refused(owner, teammate):
    assert "Choose a role" in set_role(owner, teammate, "superuser").content.decode()
    assert role_of(teammate) == "member"


def test_the_team_page_lists_roles_and_offers_owner_only_to_owners(owner, team_admin, teammate):
    owner_page = logged_in(owner).get("/account/team/").content.decode()
    admin_page = logged_in(team_admin).get("/account/team/").content.decode()
    assert 'data-role="owner"' in owner_page and 'data-role="admin"' in owner_page
    assert '<option value="owner"' in owner_page
    assert '<option value="owner"' not in admin_page
    # an admin gets no controls on an owner's row
    assert f"/account/team/members/{owner.membership.public_id}/role/" not in admin_page


def test_sign_up_makes_the_owner(owner):
    assert owner.membership.role == "owner"
    assert join(owner.membership.account, "x@example.com", "member").membership.role == "member"


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_is_owner_into_roles(make_user):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("wizchat", "0004_upgrade_request")])
    old = executor.loader.project_state([("wizchat", "0004_upgrade_request")]).apps
    Plan, Account = old.get_model("wizchat", "Plan"), old.get_model("wizchat", "Account")
    User, OldMembership = old.get_model("auth", "User"), old.get_model("wizchat", "Membership")
    account = Account.objects.create(name="Old", plan=Plan.objects.get(slug="pro"))
    for name, is_owner in (("boss", True), ("staff", False)):
        OldMembership.objects.create(user=User.objects.create(username=name), account_id=account.pk,
                                     is_owner=is_owner)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {"boss": "owner", "staff": "member"}
    assert len(set(Membership.objects.values_list("public_id", flat=True))) == 2

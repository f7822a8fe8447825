"""The team's audit trail: every team change (an invite created or revoked, someone joining with an invite, a role
changed, someone removed or leaving) writes exactly one TeamEvent naming the actor and the target by e-mail, with
the roles; the team's owners and admins read it on the Team page, members and other teams never do, staff read it
in the admin, read-only. No event holds an invite's token or its hash."""


import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from tests import team_fixtures
from tests.team_fixtures import create_link, join, logged_in
from wizchat import team
from wizchat.models import Invite, Membership, TeamEvent

team_admin, fast_hashing = team_fixtures.team_admin, team_fixtures.fast_hashing  # tests/team_fixtures.py
pytestmark = pytest.mark.usefixtures("fast_hashing")
PASSWORD = "a long enough passphrase"


def events(user) -> list[TeamEvent]:
    """The team's events after the one that started it (test_starting_a_team_writes_one_event)."""
    return list(TeamEvent.objects.filter(account=user.membership.account).exclude(action="created").order_by("id"))


def fields(event: TeamEvent) -> tuple:
    return (event.action, event.actor_email, event.target_email, event.previous_role, event.role, event.by_staff)


def team_page(user) -> str:
    return logged_in(user).get("/account/team/").content.decode()


def test_creating_an_invite_writes_one_event(owner):
    create_link(owner, role="admin")
    [event] = events(owner)
    assert fields(event) == ("invite_created", "owner@example.com", "", "", "admin", False)
    assert event.invite == Invite.objects.get()


def test_revoking_an_invite_writes_one_event_and_revoking_again_none(owner, team_admin):
    create_link(owner)
    invite = Invite.objects.get()
    client = logged_in(team_admin)
    client.post(f"/account/team/invites/{invite.id}/revoke/")
    client.post(f"/account/team/invites/{invite.id}/revoke/")
    assert [fields(e) for e in events(owner)] == [
        ("invite_created", "owner@example.com", "", "", "member", False),
        ("invite_revoked", "admin@example.com", "", "", "member", False),
    ]
    assert events(owner)[1].invite == invite


def test_signing_up_with_an_invite_writes_one_event_naming_the_invite(owner, team_admin):
    path = create_link(team_admin, role="admin")
    Client().post(path, {"email": "new@example.com", "password": PASSWORD})
    joined = events(owner)[-1]
    assert len(events(owner)) == 2
    assert fields(joined) == ("joined", "new@example.com", "new@example.com", "", "admin", False)
    assert joined.invite == Invite.objects.get()
    assert f"joined as an admin with invite link {str(joined.invite_id)[:8]} created by admin@example.com" in (
        team_page(owner))


def test_a_logged_in_user_joining_with_an_invite_writes_one_event(owner):
    path = create_link(owner)
    user = get_user_model().objects.create_user("loner@example.com", "loner@example.com", PASSWORD)
    logged_in(user).post(path)
    assert [fields(e) for e in events(owner)][1:] == [
        ("joined", "loner@example.com", "loner@example.com", "", "member", False)]


def test_a_refused_join_writes_nothing(owner, outsider):
    path = create_link(owner)
    logged_in(outsider).post(path)
    assert [e.action for e in events(owner)] == ["invite_created"]
    assert events(outsider) == []


def test_a_role_change_writes_one_event_with_both_roles(owner, team_admin, teammate):
    logged_in(team_admin).post(f"/account/team/members/{teammate.membership.public_id}/role/", {"role": "admin"})
    [event] = events(owner)
    assert fields(event) == ("role_changed", "admin@example.com", "mate@example.com", "member", "admin", False)
    assert "changed the role of mate@example.com from member to admin" in team_page(owner)


def test_an_unchanged_or_refused_role_change_writes_nothing(owner, team_admin, teammate):
    logged_in(team_admin).post(f"/account/team/members/{teammate.membership.public_id}/role/", {"role": "member"})
    logged_in(team_admin).post(f"/account/team/members/{teammate.membership.public_id}/role/", {"role": "owner"})
    logged_in(owner).post(f"/account/team/members/{owner.membership.public_id}/role/", {"role": "member"})
    assert events(owner) == []


def test_a_removal_writes_one_event(owner, teammate):
    logged_in(owner).post(f"/account/team/members/{teammate.membership.public_id}/remove/")
    [event] = events(owner)
    assert fields(event) == ("removed", "owner@example.com", "mate@example.com", "member", "", False)
    assert "removed mate@example.com (a member) from the team" in team_page(owner)


def test_leaving_writes_one_event(owner, team_admin):
    logged_in(team_admin).post(f"/account/team/members/{team_admin.membership.public_id}/remove/")
    [event] = TeamEvent.objects.exclude(action="created")
    assert fields(event) == ("removed", "admin@example.com", "admin@example.com", "admin", "", False)
    assert "left the team (was an admin)" in team_page(owner)


def test_a_refused_removal_writes_nothing(owner, team_admin):
    join(owner.membership.account, "second@example.com", "owner")
    logged_in(team_admin).post(f"/account/team/members/{owner.membership.public_id}/remove/")
    logged_in(owner).post(f"/account/team/members/{owner.membership.public_id}/role/", {"role": "bogus"})
    assert events(owner) == []


def test_the_service_writes_the_event_in_the_changes_transaction(owner, teammate):
    """The event and the change commit together: a change that fails after it leaves neither."""
    with pytest.raises(RuntimeError), transaction.atomic():
        team.member_set_role(owner.membership, teammate.membership, "admin")
        raise RuntimeError
    assert events(owner) == []
    assert Membership.objects.get(pk=teammate.membership.pk).role == "member"


def test_no_event_holds_an_invite_token_or_its_hash(owner):
    paths = [create_link(owner), create_link(owner, role="admin")]
    Client().post(paths[0], {"email": "new@example.com", "password": PASSWORD})
    logged_in(owner).post(f"/account/team/invites/{Invite.objects.get(used__isnull=True).id}/revoke/")
    secrets = [p.split("/")[2] for p in paths] + list(Invite.objects.values_list("token_hash", flat=True))
    rows = [str(row) for row in TeamEvent.objects.values_list()]
    assert len(rows) == 5  # the team's start, 2 links created, 1 used, 1 revoked
    assert not [s for s in secrets for row in rows if s in row]
    page = team_page(owner)
    assert not [s for s in secrets if s in page]


def test_owners_and_admins_see_the_activity_members_do_not(owner, team_admin, teammate):
    create_link(owner)
    assert "Team activity" in team_page(owner)
    assert "created invite link" in team_page(team_admin)
    page = team_page(teammate)
    assert "Team activity" not in page and "created invite link" not in page


def test_another_team_never_sees_the_events(owner, outsider, teammate):
    create_link(owner)
    logged_in(owner).post(f"/account/team/members/{teammate.membership.public_id}/role/", {"role": "admin"})
    page = team_page(outsider)
    assert "mate@example.com" not in page and "created invite link" not in page
    entries, more = team.events_page(outsider.membership.account)
    assert [entry.text for entry in entries] == ["started the team, as its owner"] and not more  # its own only


def test_the_activity_pages_newest_first(owner, monkeypatch):
    monkeypatch.setattr(team, "EVENTS_PER_PAGE", 2)
    for role in ("member", "admin", "owner"):
        create_link(owner, role=role)
    first = team_page(owner)
    assert "for an owner" in first and "for an admin" in first and "for a member" not in first
    assert "?activity=2#activity" in first
    second = logged_in(owner).get("/account/team/?activity=2").content.decode()
    assert "for a member" in second and "for an owner" not in second
    assert logged_in(owner).get("/account/team/?activity=x%00").status_code == 200


@pytest.fixture
def staff_client(db):
    staff = get_user_model().objects.create_superuser("staff@example.com", "staff@example.com", "staff pass 123!")
    return logged_in(staff)


def test_staff_read_the_events_in_the_admin_and_cannot_change_them(staff_client, owner):
    create_link(owner)
    event = TeamEvent.objects.get(action="invite_created")
    assert "owner@example.com" in staff_client.get("/admin/wizchat/teamevent/").content.decode()
    page = staff_client.get(f"/admin/wizchat/teamevent/{event.pk}/change/")
    assert page.status_code == 200 and 'name="actor_email"' not in page.content.decode()
    assert staff_client.get("/admin/wizchat/teamevent/add/").status_code == 403
    assert staff_client.post(f"/admin/wizchat/teamevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    staff_client.post(f"/admin/wizchat/teamevent/{event.pk}/change/", {"actor_email": "someone@example.com"})
    event.refresh_from_db()
    assert event.actor_email == "owner@example.com"


def test_starting_a_team_writes_one_event(owner, client):
    [started] = TeamEvent.objects.filter(account=owner.membership.account)
    assert fields(started) == ("created", "owner@example.com", "owner@example.com", "", "owner", False)
    assert "started the team, as its owner" in team_page(owner)
    owner.membership.delete()  # removed from their team: they start another one
    team.team_start(owner, "Second team")
    [again] = TeamEvent.objects.filter(account__name="Second team")
    assert fields(again) == ("created", "owner@example.com", "owner@example.com", "", "owner", False)

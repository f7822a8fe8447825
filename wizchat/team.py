"""The team: invite links, roles and removals. Who may do what is wizchat.roles'; the rules that keep a team
administrable are here, whatever path a request takes:

- owners and admins invite (an owner may invite an owner) and change roles among admin and member;
- only an owner makes someone an owner, changes an owner's role or removes an owner;
- a team always keeps an owner: the last one can be neither demoted nor removed (nor leave);
- an invite link is single use, expires after INVITE_DAYS, can be revoked; only its SHA-256 is stored;
- every change is recorded as one TeamEvent in the change's transaction (who, whom by e-mail, the roles, the
  invite's row; never a token), for the team's owners and admins and for staff.

The admin applies the same last-owner rule (`owners_keep`) to staff's changes and records them too.
Plans have no seat limit, so an invite is never refused for the team's size."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.formats import date_format

from .accounts import team_create
from .models import Account, Invite, Membership, Role, TeamEvent
from .roles import RoleRequired

INVITE_DAYS = 7
EVENTS_PER_PAGE = 25
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")  # secrets.token_urlsafe(32) is 43 characters


class TeamRefused(Exception):
    """A team change the rules refuse. `str()` says why and what to do instead."""


class TeamNotFound(Exception):
    """No such member or invite in the requester's team (the view answers 404)."""


class InviteInvalid(Exception):
    """An invite link that cannot be used: garbled or unknown (`gone` False), or used, revoked or expired."""

    def __init__(self, message: str, gone: bool = False):
        super().__init__(message)
        self.gone = gone


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _require(by: Membership, action: str) -> None:
    if by.role not in (Role.OWNER, Role.ADMIN):
        raise RoleRequired(by, action)


def _role(value: str) -> str:
    if value not in Role.values:
        raise TeamRefused("Choose a role: owner, admin or member.")
    return value


def _owner_only(by: Membership, what: str) -> None:
    if by.role != Role.OWNER:
        raise TeamRefused(f"Only an owner of {by.account.name} can {what}.")


def _who(membership: Membership) -> str:
    return _email(membership.user)


def _email(user) -> str:
    return (user.email or user.get_username()) if user is not None else ""


def _locked_roles(account: Account) -> dict[int, str]:
    """Every membership of the team (pk → role as stored), the rows locked until the transaction ends, always in
    the same order, so that concurrent changes in a team wait for each other instead of deadlocking."""
    rows = Membership.objects.select_for_update().filter(account=account).order_by("pk")
    return dict(rows.values_list("pk", "role"))


def owners_keep(account: Account, changes: Mapping[int, str | None], *, added_owners: int = 0,
                by: Membership | None = None) -> None:
    """The rule that a team always keeps an owner, for every path that changes memberships (the team page, the
    admin). `changes`: membership pk → its new role, or None when it leaves the team; `added_owners`: owners
    joining in the same change. Raises TeamRefused naming the last owner(s) when the team would have none.

    Reads the roles as stored, with every membership row of the team locked until the transaction ends: two
    owners demoting each other at once cannot leave the team without one. A team that has no owner already (made
    so outside WizChat) is not refused a change."""
    roles = _locked_roles(account)
    owners = [pk for pk, role in roles.items() if role == Role.OWNER]
    if added_owners or not owners or any(changes.get(pk, role) == Role.OWNER for pk, role in roles.items()):
        return
    leaving = list(Membership.objects.filter(pk__in=owners).select_related("user").order_by("created"))
    if len(leaving) == 1:
        whom = "You are" if by is not None and leaving[0].pk == by.pk else f"{_who(leaving[0])} is"
        last = f"{whom} the last owner of {account.name}"
    else:
        last = f"{', '.join(_who(m) for m in leaving)} are the last owners of {account.name}"
    if all(changes.get(m.pk) is None for m in leaving):
        removed = "cannot be removed" if len(leaving) == 1 else "cannot all be removed"
        raise TeamRefused(f"{last} and {removed}: a team always keeps an owner. Make someone else an owner first.")
    raise TeamRefused(f"{last}, and a team always keeps an owner: make someone else an owner first.")


def _locked_role(member: Membership) -> str:
    """The member's role as stored, with the team's rows locked (a concurrent change of the same member waits,
    then sees this one's outcome: one event per change)."""
    role = _locked_roles(member.account).get(member.pk)
    if role is None:  # removed meanwhile
        raise TeamRefused(f"{_who(member)} is no longer in {member.account.name}.")
    return role


# --- the team's audit trail -------------------------------------------------------------------------------------

def event_record(account: Account, action: str, *, actor, target=None, role: str = "", previous_role: str = "",
                 invite: Invite | None = None, by_staff: bool = False) -> TeamEvent:
    """One entry in the team's audit trail. `actor` and `target` are users, kept by their e-mail as it is now."""
    return TeamEvent.objects.create(account=account, action=action, actor=actor, actor_email=_email(actor),
                                    target_email=_email(target), role=role, previous_role=previous_role,
                                    invite=invite, by_staff=by_staff)


@dataclass
class Entry:
    when: datetime
    who: str
    text: str


def _label(role: str) -> str:
    return Role(role).label.lower() if role in Role.values else (role or "?")


def _a(role: str) -> str:
    name = _label(role)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _link(event: TeamEvent) -> str:
    return f"invite link {str(event.invite_id)[:8]}" if event.invite_id else "an invite link"


def event_text(event: TeamEvent) -> str:
    """What the event says on the Team page, after who did it."""
    action, target = event.action, event.target_email
    if action == TeamEvent.Action.INVITE_CREATED:
        return f"created {_link(event)} for {_a(event.role)}"
    if action == TeamEvent.Action.INVITE_REVOKED:
        return f"revoked {_link(event)} for {_a(event.role)}"
    if action == TeamEvent.Action.JOINED:
        creator = _email(event.invite.created_by) if event.invite_id else ""
        return f"joined as {_a(event.role)} with {_link(event)}" + (f" created by {creator}" if creator else "")
    if action == TeamEvent.Action.ROLE_CHANGED:
        return f"changed the role of {target} from {_label(event.previous_role)} to {_label(event.role)}"
    if action == TeamEvent.Action.REMOVED:
        if target == event.actor_email and not event.by_staff:
            return f"left the team (was {_a(event.previous_role)})"
        return f"removed {target} ({_a(event.previous_role)}) from the team"
    if action == TeamEvent.Action.CREATED:
        return "started the team, as its owner"
    if action == TeamEvent.Action.ADDED:
        return f"added {target} to the team as {_a(event.role)}"
    return event.get_action_display()


def events_page(account: Account, page: int = 1, per_page: int | None = None) -> tuple[list[Entry], bool]:
    """One page of the team's audit trail, newest first, and whether older entries follow."""
    page, per_page = max(1, page), per_page or EVENTS_PER_PAGE
    rows = list(account.team_events.select_related("invite__created_by")
                .order_by("-created", "-id")[(page - 1) * per_page:page * per_page + 1])
    entries = [Entry(when=e.created, text=event_text(e),
                     who=(e.actor_email or "WizChat") + (" (WizChat staff)" if e.by_staff else ""))
               for e in rows[:per_page]]
    return entries, len(rows) > per_page


# --- members ----------------------------------------------------------------------------------------------------

def member_get(account: Account, public_id) -> Membership:
    try:
        return Membership.objects.select_related("user").get(account=account, public_id=public_id)
    except (Membership.DoesNotExist, ValueError):
        raise TeamNotFound("No such member in your team") from None


def members_list(account: Account) -> list[Membership]:
    order = {Role.OWNER: 0, Role.ADMIN: 1, Role.MEMBER: 2}
    rows = account.memberships.select_related("user").order_by("created")
    return sorted(rows, key=lambda m: order.get(m.role, 3))


@transaction.atomic
def member_set_role(by: Membership, member: Membership, role: str) -> Membership:
    """Give `member` the `role`, as `by` (an owner or admin of the same team)."""
    _require(by, "change roles in the team")
    role = _role(role)
    member.role = previous = _locked_role(member)
    if role == previous:
        return member
    if role == Role.OWNER:
        _owner_only(by, "make someone an owner")
    if previous == Role.OWNER:
        _owner_only(by, "change an owner's role")
        owners_keep(member.account, {member.pk: role}, by=by)
    member.role = role
    member.save(update_fields=["role"])
    event_record(member.account, TeamEvent.Action.ROLE_CHANGED, actor=by.user, target=member.user, role=role,
                 previous_role=previous)
    return member


@transaction.atomic
def member_remove(by: Membership, member: Membership) -> None:
    """Remove `member` from the team, as `by`. The user keeps their log-in, without a team (they may accept an
    invite to another team or start their own)."""
    _require(by, "remove people from the team")
    member.role = _locked_role(member)
    if member.role == Role.OWNER:
        _owner_only(by, "remove an owner")
        owners_keep(member.account, {member.pk: None}, by=by)
    event_record(member.account, TeamEvent.Action.REMOVED, actor=by.user, target=member.user,
                 previous_role=member.role)
    member.delete()


# --- invites ----------------------------------------------------------------------------------------------------

def invite_get(account: Account, invite_id) -> Invite:
    try:
        return account.invites.get(pk=invite_id)
    except (Invite.DoesNotExist, ValueError):
        raise TeamNotFound("No such invite in your team") from None


def invites_pending(account: Account) -> list[Invite]:
    return list(account.invites.filter(used__isnull=True, revoked__isnull=True, expires__gt=timezone.now())
                .select_related("created_by"))


@transaction.atomic
def invite_create(by: Membership, role: str) -> tuple[Invite, str]:
    """A new invite link's row and its token; the token exists only in this return value."""
    _require(by, "invite people to the team")
    role = _role(role)
    if role == Role.OWNER:
        _owner_only(by, "invite an owner")
    token = secrets.token_urlsafe(32)
    invite = Invite.objects.create(account=by.account, role=role, token_hash=token_hash(token),
                                   created_by=by.user, expires=timezone.now() + timedelta(days=INVITE_DAYS))
    event_record(by.account, TeamEvent.Action.INVITE_CREATED, actor=by.user, role=role, invite=invite)
    return invite, token


@transaction.atomic
def invite_revoke(by: Membership, invite: Invite) -> Invite:
    """Revoke a pending invite (a used or revoked one is left as it is, and no event is recorded)."""
    _require(by, "revoke invites")
    now = timezone.now()
    if Invite.objects.filter(pk=invite.pk, used__isnull=True, revoked__isnull=True).update(revoked=now):
        invite.revoked = now
        event_record(by.account, TeamEvent.Action.INVITE_REVOKED, actor=by.user, role=invite.role, invite=invite)
    return invite


def _usable(invite: Invite | None) -> Invite:
    if invite is None:
        raise InviteInvalid("This invite link is not valid. Check that it was copied whole, or ask the team's "
                            "owners or admins for a new one.")
    ask = f"Ask the owners or admins of {invite.account.name} for a new one."
    if invite.used is not None:
        raise InviteInvalid(f"This invite link was already used: each link works once. {ask}", gone=True)
    if invite.revoked is not None:
        raise InviteInvalid(f"This invite link was revoked. {ask}", gone=True)
    if invite.expires <= timezone.now():
        when = date_format(timezone.localtime(invite.expires), "j M Y")
        raise InviteInvalid(f"This invite link expired on {when} (links last {INVITE_DAYS} days). {ask}", gone=True)
    return invite


def invite_find(token: str, *, lock: bool = False) -> Invite:
    """The usable invite a token names; InviteInvalid (with the reason) for any other token."""
    if not _TOKEN.match(token or ""):
        return _usable(None)
    rows = Invite.objects.select_related("account")
    if lock:
        rows = rows.select_for_update(of=("self",))
    return _usable(rows.filter(token_hash=token_hash(token)).first())


def _join(invite: Invite, user) -> Membership:
    try:
        with transaction.atomic():
            membership = Membership.objects.create(user=user, account=invite.account, role=invite.role)
    except IntegrityError:  # joined a team in the meantime (one team per user)
        raise TeamRefused(already_in_team(user, invite.account)) from None
    invite.used, invite.used_by = timezone.now(), user
    invite.save(update_fields=["used", "used_by"])
    event_record(invite.account, TeamEvent.Action.JOINED, actor=user, target=user, role=invite.role, invite=invite)
    return membership


def already_in_team(user, account: Account) -> str:
    current = Membership.objects.filter(user=user).select_related("account").first()
    if current is not None and current.account_id == account.pk:
        return f"You are already in {account.name}."
    team = current.account.name if current is not None else "another team"
    return (f"You are already in {team}: a WizChat log-in belongs to one team. To join {account.name}, log out "
            "and open this link again to sign up with another e-mail address.")


@transaction.atomic
def invite_accept(token: str, user) -> Membership:
    """A logged-in user without a team joins the invite's team with its role."""
    invite = invite_find(token, lock=True)
    if Membership.objects.filter(user=user).exists():
        raise TeamRefused(already_in_team(user, invite.account))
    return _join(invite, user)


@transaction.atomic
def invite_signup(token: str, *, email: str, password: str):
    """A new user signs up through an invite link and joins its team with its role, in one transaction."""
    invite = invite_find(token, lock=True)
    email = email.lower()
    user = get_user_model().objects.create_user(username=email, email=email, password=password)
    _join(invite, user)
    return user


# --- a user without a team ----------------------------------------------------------------------------------

@transaction.atomic
def team_start(user, name: str, plan_slug: str = "free") -> Membership:
    """A user without a team (removed from theirs) starts a new one, as its owner, on the Free plan."""
    if Membership.objects.filter(user=user).exists():
        raise TeamRefused("You are already in a team.")
    try:
        with transaction.atomic():
            return team_create(user, name, plan_slug)
    except IntegrityError:
        raise TeamRefused("You are already in a team.") from None

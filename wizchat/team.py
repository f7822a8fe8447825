"""The team: invite links, roles and removals. Who may do what is wizchat.roles'; the rules that keep a team
administrable are here, whatever path a request takes:

- owners and admins invite (an owner may invite an owner) and change roles among admin and member;
- only an owner makes someone an owner, changes an owner's role or removes an owner;
- a team always keeps an owner: the last one can be neither demoted nor removed (nor leave);
- an invite link is single use, expires after INVITE_DAYS, can be revoked; only its SHA-256 is stored.

Plans have no seat limit, so an invite is never refused for the team's size."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.formats import date_format

from .models import Account, Invite, Membership, Plan, Role
from .roles import RoleRequired

INVITE_DAYS = 7
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


def _locked_owners(account: Account) -> int:
    """The team's owner count, with every membership row of the team locked until the transaction ends: two
    owners demoting each other at once cannot leave the team without one."""
    rows = list(Membership.objects.select_for_update().filter(account=account).values_list("role", flat=True))
    return sum(1 for role in rows if role == Role.OWNER)


def _who(membership: Membership) -> str:
    return membership.user.email or membership.user.username


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
    if role == member.role:
        return member
    if role == Role.OWNER:
        _owner_only(by, "make someone an owner")
    if member.role == Role.OWNER:
        _owner_only(by, "change an owner's role")
        if _locked_owners(member.account) <= 1:
            whom = "You are" if member.pk == by.pk else f"{_who(member)} is"
            raise TeamRefused(f"{whom} the last owner of {member.account.name}, and a team always keeps an owner: "
                              "make someone else an owner first.")
    member.role = role
    member.save(update_fields=["role"])
    return member


@transaction.atomic
def member_remove(by: Membership, member: Membership) -> None:
    """Remove `member` from the team, as `by`. The user keeps their log-in, without a team (they may accept an
    invite to another team or start their own)."""
    _require(by, "remove people from the team")
    if member.role == Role.OWNER:
        _owner_only(by, "remove an owner")
        if _locked_owners(member.account) <= 1:
            whom = "You are" if member.pk == by.pk else f"{_who(member)} is"
            raise TeamRefused(f"{whom} the last owner of {member.account.name} and cannot be removed: a team "
                              "always keeps an owner. Make someone else an owner first.")
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


def invite_create(by: Membership, role: str) -> tuple[Invite, str]:
    """A new invite link's row and its token; the token exists only in this return value."""
    _require(by, "invite people to the team")
    role = _role(role)
    if role == Role.OWNER:
        _owner_only(by, "invite an owner")
    token = secrets.token_urlsafe(32)
    invite = Invite.objects.create(account=by.account, role=role, token_hash=token_hash(token),
                                   created_by=by.user, expires=timezone.now() + timedelta(days=INVITE_DAYS))
    return invite, token


def invite_revoke(by: Membership, invite: Invite) -> Invite:
    _require(by, "revoke invites")
    if invite.used is None and invite.revoked is None:
        invite.revoked = timezone.now()
        invite.save(update_fields=["revoked"])
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
    account = Account.objects.create(name=(name or "").strip()[:100] or (user.email or user.username).split("@")[0],
                                     plan=Plan.objects.get(slug=plan_slug))
    try:
        with transaction.atomic():
            return Membership.objects.create(user=user, account=account, role=Role.OWNER)
    except IntegrityError:
        raise TeamRefused("You are already in a team.") from None

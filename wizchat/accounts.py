"""Accounts: sign-up and the one helper every view uses to find the requesting user's account."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import Http404

from .models import Account, Membership, Plan, Role, TeamEvent


class NoTeam(Http404):
    """A logged-in user in no team (removed from theirs): the 404 page offers to start a team."""


def account_for_user(user) -> Account:
    """The account of a logged-in user; 404 (never details) for a user without one."""
    try:
        return user.membership.account
    except (AttributeError, Membership.DoesNotExist):
        raise NoTeam("No account") from None


@transaction.atomic
def account_signup(*, email: str, password: str, team_name: str, plan_slug: str = "free"):
    """Create a user, their team account on `plan_slug`, and the owner membership."""
    User = get_user_model()
    user = User.objects.create_user(username=email.lower(), email=email.lower(), password=password)
    team_create(user, team_name, plan_slug)
    return user


def team_create(user, name: str, plan_slug: str) -> Membership:
    """A new team with `user` as its owner, its audit trail starting with that (call inside a transaction)."""
    email = user.email or user.username
    account = Account.objects.create(name=(name or "").strip()[:100] or email.split("@")[0],
                                     plan=Plan.objects.get(slug=plan_slug))
    membership = Membership.objects.create(user=user, account=account, role=Role.OWNER)
    TeamEvent.objects.create(account=account, action=TeamEvent.Action.CREATED, actor=user, actor_email=email,
                             target_email=email, role=Role.OWNER)
    return membership

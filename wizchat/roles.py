"""Roles inside a team: who may change what. The one place a view asks.

- Owners and admins change BYOI settings (and Test Connection / Re-test), deployments, API keys, the widget's
  allowed websites, knowledge settings, the plan (upgrade requests) and the team (invites, roles, removals); they
  create, edit and delete chatbots and delete documents.
- Members use the chatbots: they see every chatbot (BYOI settings read-only, never a secret), chat with them, read
  the conversation history, add documents and retry a failed ingestion.
- Among owners and admins, only an owner makes or unmakes an owner (wizchat.team).

Views call `manager_required(...)` (a decorator) or `manager_require(user, action)`; a member gets a 403 page
naming the team's owners and admins, never a 500."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.db.models import Case, When

from .accounts import NoTeam
from .models import Membership, Role

MANAGERS = (Role.OWNER, Role.ADMIN)
# The managers a refusal names, at most (a large team's list would not help).
NAMED_MANAGERS = 5


class RoleRequired(PermissionDenied):
    """A member tried what only owners and admins may do. `str()` is the sentence shown on the 403 page."""

    def __init__(self, membership: Membership, action: str):
        self.account = membership.account
        self.action = action
        self.managers = manager_emails(membership.account)
        ask = f"; ask one of them: {', '.join(self.managers)}" if self.managers else ""
        super().__init__(f"Only owners and admins of {self.account.name} can {action}{ask}.")


def membership_for_user(user) -> Membership:
    """The logged-in user's membership; 404 (never details) for a user without a team."""
    try:
        return user.membership
    except (AttributeError, Membership.DoesNotExist):
        raise NoTeam("No account") from None


def can_manage(membership: Membership | None) -> bool:
    return membership is not None and membership.role in MANAGERS


def manager_emails(account) -> list[str]:
    """The team's owners, then its admins, oldest first: whom a member can ask."""
    owners_first = Case(When(role=Role.OWNER, then=0), default=1)
    rows = (account.memberships.filter(role__in=MANAGERS).select_related("user")
            .order_by(owners_first, "created")[:NAMED_MANAGERS])
    return [m.user.email or m.user.username for m in rows]


def manager_require(user, action: str) -> Membership:
    """The user's membership if they are an owner or admin of their team; RoleRequired (403) otherwise."""
    membership = membership_for_user(user)
    if not can_manage(membership):
        raise RoleRequired(membership, action)
    return membership


def manager_required(action: str, methods: tuple[str, ...] | None = None):
    """A view for owners and admins only (`methods`: only for these HTTP methods, e.g. ("POST",) for a page
    members may read). Put it under @login_required and the method decorator, so that an anonymous visitor is
    sent to log in and a wrong method is a 405 before the role is looked at."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if methods is None or request.method in methods:
                manager_require(request.user, action)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator

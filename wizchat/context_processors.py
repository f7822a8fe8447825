from .models import Membership
from .roles import can_manage


def account(request):
    """The team of the logged-in user, their membership and whether they may change things (owners and admins:
    templates hide the controls members may not use; the views refuse them anyway)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    try:
        membership = user.membership
    except Membership.DoesNotExist:
        return {}
    return {"current_account": membership.account, "current_membership": membership,
            "can_manage": can_manage(membership)}

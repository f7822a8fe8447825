from .models import Membership


def account(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    try:
        return {"current_account": user.membership.account}
    except Membership.DoesNotExist:
        return {}

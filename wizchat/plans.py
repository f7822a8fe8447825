"""Plan limits and gating. Enforced here, in the service layer, whatever path a request takes."""

from django.core.exceptions import PermissionDenied

from .models import Account, Plan

PLANS = [
    # slug, name, byoi_allowed, chatbots, documents per chatbot, messages per month
    ("free", "Free", False, 1, 10, 100),
    ("pro", "Pro", True, 5, 100, 5_000),
    ("pro-plus", "Pro+", True, 15, 500, 20_000),
    ("business", "Business", True, 50, 2_000, 100_000),
    ("enterprise", "Enterprise", True, 500, 20_000, 1_000_000),
]

# Public API keys per chatbot (several, so that a rotation can overlap).
API_KEYS_PER_CHATBOT = {"free": 2, "pro": 5, "pro-plus": 10, "business": 25, "enterprise": 100}


class PlanLimitReached(PermissionDenied):
    """Raised with a message that tells the customer which limit and how to lift it."""


def byoi_plan_names() -> list[str]:
    return list(Plan.objects.filter(byoi_allowed=True).values_list("name", flat=True))


def plan_require_byoi(account: Account) -> None:
    if not account.plan.byoi_allowed:
        names = ", ".join(byoi_plan_names())
        raise PlanLimitReached(
            f"BYOI is not included in the {account.plan.name} plan. It is available on {names}."
        )


def plan_check_chatbot_limit(account: Account) -> None:
    count = account.chatbots.count()
    if count >= account.plan.max_chatbots:
        raise PlanLimitReached(
            f"Your {account.plan.name} plan allows {account.plan.max_chatbots} chatbot"
            f"{'s' if account.plan.max_chatbots != 1 else ''}. Delete one or upgrade your plan to create another."
        )


def plan_check_document_limit(chatbot) -> None:
    plan = chatbot.account.plan
    if chatbot.documents.count() >= plan.max_documents:
        raise PlanLimitReached(
            f"Your {plan.name} plan allows {plan.max_documents} documents per chatbot. "
            "Delete a document or upgrade your plan to add more."
        )


def message_limit_text(plan_name: str, limit: int) -> str:
    """What a customer reads when the month's messages are used up (the platform and a deployed runtime alike)."""
    return (f"Your {plan_name} plan allows {limit} messages a month; this month's are used up. "
            "Upgrade your plan to keep chatting.")


def plan_check_message_limit(account: Account, sent_this_month: int) -> None:
    if sent_this_month >= account.plan.max_messages_per_month:
        raise PlanLimitReached(message_limit_text(account.plan.name, account.plan.max_messages_per_month))


def plan_check_api_key_limit(chatbot) -> None:
    plan = chatbot.account.plan
    active = chatbot.api_keys.filter(revoked__isnull=True).count()
    if active >= plan.max_api_keys:
        raise PlanLimitReached(
            f"Your {plan.name} plan allows {plan.max_api_keys} active API keys per chatbot. "
            "Revoke one or upgrade your plan to create another."
        )


class UpgradeRefused(Exception):
    """An upgrade request that cannot be taken (its message says why)."""


def upgrade_request_create(account: Account, user, plan_slug: str, message: str = ""):
    """Ask staff to move `account` to another plan; an open request of the account is updated instead of
    adding a second one. Returns the request."""
    from .models import UpgradeRequest

    plan = Plan.objects.filter(slug=plan_slug).first()
    if plan is None:
        raise UpgradeRefused("Choose one of the plans listed.")
    if plan.pk == account.plan_id:
        raise UpgradeRefused(f"Your team is already on the {plan.name} plan.")
    message = (message or "").strip()[:2000]
    request = account.upgrade_requests.filter(status=UpgradeRequest.Status.OPEN).first()
    if request is None:
        request = UpgradeRequest(account=account, current_plan=account.plan)
    request.requested_by, request.plan, request.message = user, plan, message
    request.save()
    return request


def upgrade_request_apply(request) -> None:
    """Staff accepted the request: the account moves to the plan asked for."""
    from django.utils import timezone

    from .models import UpgradeRequest

    account = request.account
    account.plan = request.plan
    account.save(update_fields=["plan"])
    request.status = UpgradeRequest.Status.DONE
    request.handled = timezone.now()
    request.save(update_fields=["status", "handled"])

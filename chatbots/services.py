"""Chatbot services: the work behind the dashboard views, callable without HTTP."""

import logging

from django.db import transaction

from byoi.errors import NotFound
from wizchat.celery import send_on_commit
from wizchat.models import Account
from wizchat.plans import plan_check_chatbot_limit

from .models import Chatbot

log = logging.getLogger(__name__)


def chatbot_get_for_user(user, chatbot_id) -> Chatbot:
    """The chatbot if it belongs to the user's account; NotFound otherwise (never a hint that it exists).
    One query: the chatbot, its account and plan, joined through the user's membership."""
    if not getattr(user, "is_authenticated", False) or user.pk is None:
        raise NotFound("No account")
    try:
        return Chatbot.objects.select_related("account__plan").get(pk=chatbot_id, account__memberships__user_id=user.pk)
    except (Chatbot.DoesNotExist, ValueError):
        raise NotFound("No such chatbot") from None


@transaction.atomic
def chatbot_create(account: Account, *, name: str, instructions: str = "") -> Chatbot:
    # Lock the account row so two concurrent creates cannot both pass the limit check.
    Account.objects.select_for_update().get(pk=account.pk)
    plan_check_chatbot_limit(account)
    return Chatbot.objects.create(account=account, name=name, instructions=instructions)


def chatbot_update(chatbot: Chatbot, *, name: str, instructions: str) -> Chatbot:
    chatbot.name = name
    chatbot.instructions = instructions
    chatbot.save(update_fields=["name", "instructions", "updated"])
    return chatbot


def chatbot_delete(chatbot: Chatbot) -> None:
    """Delete the chatbot, its rows and its data in WizChat's default stores (after commit, by a Celery task
    that retries). Data in a customer's own infrastructure is never dropped."""
    from byoi.tasks import platform_data_purge_task

    from .deployments import deployment_stop
    from .models import Deployment

    chatbot_id = str(chatbot.pk)
    if Deployment.objects.filter(chatbot=chatbot, target=Deployment.Target.KUBERNETES).exists():
        deployment_stop(chatbot)  # its objects leave the cluster; a local runtime stops when its row is gone
    with transaction.atomic():
        chatbot.delete()
        send_on_commit(platform_data_purge_task, chatbot_id, unsent=lambda _: log.error(
            "Deleted chatbot %s: the purge of its data in WizChat's stores was not queued (the broker cannot be "
            "reached); queue byoi.tasks.platform_data_purge_task for it once the broker is back", chatbot_id))

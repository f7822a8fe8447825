"""The CHATBOT argument of the operators' commands: a chatbot's UUID."""

import uuid

from django.core.management.base import CommandError

from chatbots.models import Chatbot


def chatbot_from_arg(value: str) -> Chatbot:
    raw = str(value).strip()
    try:
        chatbot_id = uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"{raw[:60]!r} is not a chatbot id: give the chatbot's UUID (shown in its page's "
                           "address).") from None
    chatbot = Chatbot.objects.select_related("account__plan").filter(pk=chatbot_id).first()
    if chatbot is None:
        raise CommandError(f"No chatbot has the id {chatbot_id}.")
    return chatbot


def deployment_env_or_error(chatbot: Chatbot) -> dict[str, str]:
    """The chatbot's deployment variables, or CommandError saying why it cannot be deployed."""
    from chatbots.deployments import DeployRefused, deployment_env

    try:
        return deployment_env(chatbot)
    except DeployRefused as refused:
        raise CommandError(str(refused)) from None

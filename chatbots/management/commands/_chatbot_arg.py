"""The CHATBOT argument of the deployment commands: a chatbot's UUID."""

import uuid

from django.core.management.base import CommandError

from chatbots.models import Chatbot


def chatbot_from_arg(value: str) -> Chatbot:
    try:
        chatbot_id = uuid.UUID(value)
    except ValueError:
        raise CommandError(f"CHATBOT is a chatbot's UUID (shown in its page's address), not “{value[:60]}”.") from None
    chatbot = Chatbot.objects.select_related("account__plan").filter(pk=chatbot_id).first()
    if chatbot is None:
        raise CommandError(f"No chatbot has the id {chatbot_id}.")
    return chatbot

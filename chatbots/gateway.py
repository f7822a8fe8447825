"""The public API on the platform: every chatbot, keys in the platform database (chatbots.apikeys), the plan's
monthly quota counted for API and widget messages alike (chatbots.chat.PlatformHost)."""

from __future__ import annotations

from django.conf import settings

from . import apikeys, widget
from .chat import PLATFORM
from .models import Chatbot
from .publicapi import Caller, Gateway, Target


def _target(chatbot: Chatbot) -> Target:
    return Target(slug=chatbot.slug, chatbot=chatbot, host=PLATFORM, created=int(chatbot.created.timestamp()),
                  owner=f"account-{chatbot.account_id}")


class PlatformGateway(Gateway):
    def authenticate(self, token: str, request) -> Caller | None:
        if token.startswith(widget.TOKEN_START):
            chatbot_id = widget.session_chatbot(token)
            chatbot = (Chatbot.objects.select_related("account__plan").filter(pk=chatbot_id).first()
                       if chatbot_id else None)
            if chatbot is None:
                return None
            key = widget.signing_key(apikeys.chatbot_pepper(chatbot.id))
            session = widget.session_verify(key, token, chatbot.id)
            if session is None or session["o"] not in chatbot.allowed_origins:  # an origin removed since
                return None
            return Caller("widget", session["s"], [_target(chatbot)], settings.WIDGET_RATE_LIMIT_PER_MINUTE)
        row = apikeys.apikey_authenticate(token)
        if row is None:
            return None
        return Caller("key", row.prefix, [_target(row.chatbot)], settings.API_RATE_LIMIT_PER_MINUTE)

    def widget_chatbot(self, chatbot_id):
        chatbot = Chatbot.objects.filter(pk=chatbot_id).first()
        if chatbot is None:
            return None
        return chatbot, list(chatbot.allowed_origins), widget.signing_key(apikeys.chatbot_pepper(chatbot.id))

"""The public API in a deployed runtime: its one chatbot, the keys it was deployed with (WIZCHAT_API_KEYS: prefix
and keyed hash only) verified with the chatbot's own key-hashing key, the widget for its allowed origins."""

from __future__ import annotations

from django.conf import settings

from chatbots import apikeys, widget
from chatbots.publicapi import Caller, Gateway, Target

from .host import runtime_host


class RuntimeGateway(Gateway):
    def __init__(self):
        host = runtime_host()
        values = host.config.values
        self._pepper = values.get("WIZCHAT_API_KEY_PEPPER", "")
        self._keys = {}
        for entry in values.get("WIZCHAT_API_KEYS", []):
            prefix, _, hashed = entry.partition(":")
            if prefix and hashed:
                self._keys[prefix] = hashed
        self._origins = list(values.get("WIZCHAT_ALLOWED_ORIGINS", []))
        self._target = Target(slug=host.chatbot.slug, chatbot=host.chatbot, host=host)

    def authenticate(self, token: str, request) -> Caller | None:
        if not self._pepper:
            return None
        if token.startswith(widget.TOKEN_START):
            session = widget.session_verify(widget.signing_key(self._pepper), token, self._target.chatbot.id)
            if session is None or session["o"] not in self._origins:
                return None
            return Caller("widget", session["s"], [self._target], settings.API_RATE_LIMIT_PER_MINUTE // 3 or 1)
        prefix = apikeys.key_prefix(token)
        hashed = self._keys.get(prefix) if prefix else None
        if hashed is None or not apikeys.key_matches(self._pepper, token, hashed):
            return None
        return Caller("key", prefix, [self._target], settings.API_RATE_LIMIT_PER_MINUTE)

    def widget_chatbot(self, chatbot_id):
        if str(chatbot_id) != str(self._target.chatbot.id) or not self._pepper:
            return None
        return self._target.chatbot, self._origins, widget.signing_key(self._pepper)

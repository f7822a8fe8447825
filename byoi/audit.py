"""Audit events: who changed, tested, enabled or rotated what. Never a secret value.

Details carry field *names* ("changed": ["host", "password"]) and outcomes, never values of secret fields;
`audit_record` refuses a detail keyed by a secret field name so a careless caller fails loudly in tests."""

from byoi.models import AuditEvent
from byoi.registry import SECRET_FIELD_NAMES
from byoi.scrub import scrub


def _clean(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def audit_record(action: str, *, account=None, actor=None, chatbot=None, **detail) -> AuditEvent:
    leaked = sorted(set(detail) & set(SECRET_FIELD_NAMES))
    if leaked:
        raise ValueError(f"Audit details must not carry secret fields: {', '.join(leaked)}")
    if chatbot is not None and account is None:
        account = chatbot.account
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
        account=account,
        actor=actor,
        chatbot_id=getattr(chatbot, "pk", None),
        action=action,
        detail=_clean(detail),
    )

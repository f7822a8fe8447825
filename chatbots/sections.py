"""The knowledge, chat, history and data-location sections of the chatbot page."""

from __future__ import annotations

from byoi.access import ComponentFailed, component, location, resolve_stack
from byoi.registry import KINDS
from conversations.services import messages_this_month

from .ingestion import MAX_UPLOAD_BYTES


def knowledge_context(request, chatbot) -> dict:
    """Context for the knowledge, chat, history and data-location sections of the chatbot page.

    Only platform rows here: the counts and history come from the chatbot's components (possibly the
    customer's, possibly slow), so those panels load separately through HTMX."""
    account = chatbot.account
    documents = list(chatbot.documents.all())
    from .forms_knowledge import KnowledgeSettingsForm

    return {
        "knowledge_settings_form": KnowledgeSettingsForm(instance=chatbot),
        "documents": documents,
        "documents_limit": account.plan.max_documents,
        "upload_limit_mb": MAX_UPLOAD_BYTES // (1024 * 1024),
        "messages_used": messages_this_month(account),
        "messages_limit": account.plan.max_messages_per_month,
    }


def data_locations(chatbot) -> list[dict]:
    """One row per component: where it lives and what it holds for this chatbot, counted live."""
    try:
        stack = resolve_stack(chatbot)
    except ComponentFailed as failure:
        return [{"kind": "byoi", "label": "BYOI", "where": failure.where, "what": "", "count": None,
                 "error": str(failure), "hint": failure.hint}]
    rows = []
    for kind, spec in KINDS.items():
        row = {"kind": kind, "label": spec.label, "where": location(stack, kind), "what": spec.holds,
               "custom": stack.sources.get(kind) == "custom", "count": None, "error": None, "hint": ""}
        if spec.stores_data:
            try:
                with component(stack, kind) as backend:
                    value = backend.count(chatbot.id)
                if isinstance(value, dict):
                    row["count"] = value.get("nodes", 0)
                    row["relationships"] = value.get("relationships", 0)
                else:
                    row["count"] = value
            except ComponentFailed as failure:
                row["error"], row["hint"] = str(failure), failure.hint
        if kind == "conversations":
            from conversations.models import Outbox

            row["waiting"] = Outbox.objects.filter(chatbot=chatbot).count()
        rows.append(row)
    return rows


def deployment_context(request, chatbot) -> dict:
    """The Deploy, API keys and Widget cards of the chatbot page: labels, prefixes and origins only — never a
    component's value, a key (after the response that created it) or a hash."""
    from . import apikeys
    from .deployments import deployment_state
    from .widget import snippet

    base = f"{request.scheme}://{request.get_host()}"
    keys = apikeys.apikey_list(chatbot)
    return {
        "deploy": deployment_state(chatbot),
        "api_keys": keys,
        "api_keys_active": sum(1 for k in keys if k.revoked is None),
        "api_keys_limit": chatbot.account.plan.max_api_keys,
        "api_base": base + "/v1",
        "widget_snippet": snippet(base, chatbot.id),
        "allowed_origins_text": "\n".join(chatbot.allowed_origins),
    }

"""Keeping what a customer typed into the BYOI panel when the form comes back with an error.

Secrets are never sent back to the browser. After a failed submit they go into a short-lived SecretDraft row
(encrypted like every stored secret) and the page carries only its id, in the hidden DRAFT_FIELD; the next
submit fills each secret left blank from the draft, as long as the fields that rebind it (host, port, database,
username, endpoint) are unchanged — a new server never receives a secret typed for another. The Test Connection
results of exactly the submitted settings are found again by their fingerprint."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from .models import ConnectionTest, SecretDraft, settings_fingerprint
from .registry import KINDS

DRAFT_FIELD = "byoi-draft"
TTL_MINUTES = 30
KEPT_HELP = "Kept from your last attempt (never shown). Leave blank to keep it, or type a new one."


def _draft(data, *, account, user) -> SecretDraft | None:
    raw = (data or {}).get(DRAFT_FIELD) or ""
    try:
        draft_id = uuid.UUID(str(raw))
    except ValueError:
        return None
    since = timezone.now() - timedelta(minutes=TTL_MINUTES)
    return SecretDraft.objects.filter(pk=draft_id, account=account, user_id=user.pk, created__gte=since).first()


def _bound(kind: str, data) -> dict:
    """The posted values of the fields that rebind `kind`'s secrets, as typed."""
    spec = KINDS[kind]
    return {f.name: (data.get(f"{spec.slug}-{f.name}") or "").strip() for f in spec.fields if f.rebinds_secret}


def draft_fill(data, *, account, user):
    """(data, kept): a copy of the POSTed `data` whose blank secret fields are filled from the draft it names,
    and {kind: [secret names]} that were filled. `data` unchanged when it names no live draft of this user."""
    kept: dict[str, list[str]] = {}
    if data is None:
        return data, kept
    draft = _draft(data, account=account, user=user)
    if draft is None:
        return data, kept
    filled = data.copy()
    for kind, entry in draft.content.items():
        if kind not in KINDS or entry.get("bound") != _bound(kind, data):
            continue
        for name, value in (entry.get("secrets") or {}).items():
            key = f"{KINDS[kind].slug}-{name}"
            if name in KINDS[kind].secret_fields and value and not data.get(key):
                filled[key] = value
                kept.setdefault(kind, []).append(name)
    return filled, kept


def draft_mark(panel, kept: dict) -> None:
    """Tell the customer, on each kept secret field, that it is kept (the field itself stays empty)."""
    for section in panel.sections:
        for name in kept.get(section.kind, []):
            field = section.form.fields.get(name)
            if field is None:
                continue
            field.help_text = KEPT_HELP
            section.form[name].help_text = KEPT_HELP  # the bound field copied the help text when it was made
            field.widget.attrs.pop("aria-required", None)
            field.widget.attrs["placeholder"] = "Kept — leave blank to keep it"


def draft_keep(panel, data, *, account, user) -> str:
    """After a failed submit: keep the secrets of the switched-on components (typed now or filled from the
    previous draft) in a new draft, and mark their fields. Returns the draft's id ("" when nothing to keep)."""
    content, kept = {}, {}
    for section in panel.active_sections:
        spec = KINDS[section.kind]
        secrets = {name: data.get(f"{spec.slug}-{name}") for name in spec.secret_fields
                   if data.get(f"{spec.slug}-{name}")}
        if secrets:
            content[section.kind] = {"secrets": secrets, "bound": _bound(section.kind, data)}
            kept[section.kind] = list(secrets)
    draft_discard(data, account=account, user=user)
    if not content:
        return ""
    SecretDraft.objects.filter(created__lt=timezone.now() - timedelta(minutes=TTL_MINUTES)).delete()
    draft = SecretDraft(account=account, user=user)
    draft.content = content
    draft.save()
    draft_mark(panel, kept)
    return str(draft.pk)


def draft_discard(data, *, account, user) -> None:
    """Forget the draft `data` names (the form was saved, or a newer draft replaces it)."""
    draft = _draft(data, account=account, user=user)
    if draft is not None:
        draft.delete()


def tests_attach(panel, *, account) -> None:
    """Give each switched-on component whose settings are valid the newest finished Test Connection of exactly
    those settings (`section.last_test`), so that a form coming back with an error keeps its results."""
    for section in panel.active_sections:
        section.last_test = None
        if not section.cleaned:
            continue
        values, secrets = section.cleaned
        fingerprint = settings_fingerprint(section.kind, values, secrets)
        section.last_test = (ConnectionTest.objects
                             .filter(account=account, kind=section.kind, fingerprint=fingerprint,
                                     state__in=[ConnectionTest.State.OK, ConnectionTest.State.FAILED])
                             .order_by("-finished").first())

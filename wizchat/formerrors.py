"""The error summary at the top of a form page: one line per problem, each linking to its field."""

from __future__ import annotations


def _text(label: str, message: str) -> str:
    return message if message.startswith(label) else f"{label}: {message}"


def error_summary(groups, extra: tuple[str, ...] | list[str] = (), extra_href: str = "") -> list[dict]:
    """[{"text", "href"}] for `groups`, an iterable of (heading, form): the form's own errors first, then each
    field's in the form's order, as "heading: field label: message" (heading "" for the page's main form). `extra`:
    messages that belong to no field (linked to `extra_href`, or not at all)."""
    lines = []
    for heading, form in groups:
        if not form.is_bound or not form.errors:
            continue
        for message in form.non_field_errors():
            lines.append({"text": f"{heading}: {message}" if heading else message, "href": ""})
        for field in form:
            for message in field.errors:
                text = _text(field.label, message)
                lines.append({"text": f"{heading}: {text}" if heading else text, "href": f"#{field.id_for_label}"})
    lines += [{"text": message, "href": extra_href} for message in extra]
    return lines

"""The one check every text the platform stores goes through: no NUL and no other control characters.

PostgreSQL refuses NUL in text columns (a 500 if it gets that far), and the other control characters (escape
sequences, form feeds, backspaces) have no business in a name or a title: they break logs, terminals and the
pages that show them. Multi-line texts (instructions, pasted documents) keep
line breaks and tabs. The message names the field, so a form can show it beside the field or above it."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.utils.deconstruct import deconstructible

MULTILINE_ALLOWED = frozenset("\n\r\t")
# Unicode's control characters (category Cc is exactly C0, DEL and C1) and lone surrogates (Cs: JSON can carry
# them, UTF-8 and so PostgreSQL cannot). A regular expression: pasted documents run to two million characters.
_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def control_characters(text: str, *, multiline: bool = False) -> list[str]:
    """The control characters and lone surrogates in `text`; line breaks and tabs are kept when multi-line."""
    return (_MULTILINE if multiline else _SINGLE_LINE).findall(text)


def control_characters_removed(text: str, *, multiline: bool = False) -> str:
    """`text` without them: for text the user did not type (a file's name, a parsed file's contents)."""
    return (_MULTILINE if multiline else _SINGLE_LINE).sub("", text)


def _describe(chars: list[str]) -> str:
    if "\x00" in chars:
        return "a NUL character"
    first = chars[0]
    if 0xD800 <= ord(first) <= 0xDFFF:
        return f"an invalid character (U+{ord(first):04X}, half of a surrogate pair)"
    return f"a control character (U+{ord(first):04X})"


def text_problem(text: str, label: str, *, multiline: bool = False) -> str:
    """A message naming `label` ("the title", "API Key") when `text` holds a control character; "" when fine."""
    found = control_characters(text, multiline=multiline)
    if not found:
        return ""
    if not multiline and any(c in MULTILINE_ALLOWED for c in found):
        return f"Keep {label} on one line: remove line breaks, tabs and other control characters."
    return f"There is {_describe(found)} in {label}: remove it and try again (it may have come with copied text)."


@deconstructible
class NoControlCharacters:
    """A form field validator whose message names `label`."""

    def __init__(self, label: str = "this field", multiline: bool = False):
        self.label = label
        self.multiline = multiline

    def __call__(self, value):
        if isinstance(value, str):
            problem = text_problem(value, self.label, multiline=self.multiline)
            if problem:
                raise ValidationError(problem, code="control_characters")

    def __eq__(self, other):
        return (isinstance(other, NoControlCharacters) and other.label == self.label
                and other.multiline == self.multiline)


def guard_field(field, label: str, *, multiline: bool = False):
    """`field` (a form field) with the check, its message naming `label`. Django's own NUL validator goes: its
    message does not say which field, and this check covers NUL too."""
    field.validators = [v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)]
    field.validators.append(NoControlCharacters(label, multiline=multiline))
    return field


def guard_fields(form, labels: dict[str, str], multiline: tuple[str, ...] = ()) -> None:
    """guard_field for each named field of a form instance (`labels`: field name → label)."""
    for name, label in labels.items():
        guard_field(form.fields[name], label, multiline=name in multiline)

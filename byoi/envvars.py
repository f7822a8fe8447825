"""The spec's CUSTOM_* environment variables, to and from component settings.

Names come from the registry (Field.env), values are checked by the registry's Field.coerce. Booleans are
written "true"/"false", integers in decimal, certificates (PEM) on one line with a literal \\n between
lines. A deployed standalone runtime builds its stack from these variables alone
(byoi.resolver.resolve_from_env); this module imports nothing but the registry, so the runtime can read its
environment without the platform's services. The chatbot's own variables come from
byoi.services.components_to_env."""

from __future__ import annotations

from .registry import KINDS

PREFIX = "CUSTOM_"


class EnvInvalid(ValueError):
    """`.errors` maps a variable name to what is wrong with it (never quoting a secret's value)."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("Invalid BYOI environment: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))


def known_variables() -> dict[str, tuple[str, str]]:
    """{CUSTOM_* name: (kind, field name)} for every variable the spec defines."""
    return {f.env: (kind.slug, f.name) for kind in KINDS.values() for f in kind.fields}


def _format(value, kind: str) -> str:
    if kind == "bool":
        return "true" if value else "false"
    if kind == "int":
        return str(int(value))
    if kind == "pem":
        # One line, so that a KEY=VALUE file holds it too; read back by env_to_settings (PEM has no backslash).
        return str(value).replace("\n", "\\n")
    return str(value)


def settings_to_env(kind: str, settings: dict) -> dict[str, str]:
    env = {}
    for field in KINDS[kind].fields:
        value = settings.get(field.name)
        if value is None or value == "":
            continue
        env[field.env] = _format(value, field.kind)
    return env


def env_to_settings(environ) -> dict[str, dict]:
    """{kind: settings} from the CUSTOM_* variables in `environ`; kinds without any variable are absent.

    Unknown CUSTOM_* names, missing required variables and malformed values raise EnvInvalid."""
    known = known_variables()
    present = {k: v for k, v in environ.items() if k.startswith(PREFIX)}
    errors: dict[str, str] = {}
    for name in sorted(set(present) - set(known)):
        errors[name] = "Unknown variable. BYOI variables are: " + ", ".join(sorted(known)) + "."
    result: dict[str, dict] = {}
    for kind in KINDS.values():
        if not any(f.env in present for f in kind.fields):
            continue
        settings: dict = {}
        for field in kind.fields:
            raw = present.get(field.env)
            if raw is None or raw.strip() == "":
                if field.default is not None:
                    settings[field.name] = field.default
                elif field.required:
                    errors[field.env] = f"Missing: the {kind.label} component needs {field.label} ({field.env})."
                continue
            if field.secret:
                settings[field.name] = raw.replace("\\n", "\n") if field.kind == "pem" else raw
                continue
            try:
                settings[field.name] = field.coerce(raw)
            except ValueError as error:
                errors[field.env] = str(error)
        result[kind.slug] = settings
    if errors:
        raise EnvInvalid(errors)
    return result

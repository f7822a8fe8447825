"""BYOI forms, generated from the registry: one form class per kind, and the panel that bundles them.

Secret fields are write-only: PasswordInput(render_value=False), never given an initial value, and on an
existing component a blank secret keeps the stored one (the service decides; see component_validate)."""

from __future__ import annotations

from functools import cache

from django import forms
from django.urls import reverse

from wizchat.textcheck import guard_field

from . import certs, netguard, resolver, services
from .registry import KINDS, STORE_KINDS, Field, Kind
from .sections import byoi_plans_text


def _form_field(spec: Field) -> forms.Field:
    common = {"label": spec.label, "help_text": spec.help, "required": spec.required,
              "error_messages": {"required": f"{spec.label} is required."}}
    if spec.kind == "pem":
        # A certificate is several lines: a text area, write-only like every secret (never rendered back).
        widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off",
                                       "placeholder": "-----BEGIN CERTIFICATE-----"})
        return forms.CharField(widget=widget, strip=True, max_length=spec.max_length, **common)
    if spec.secret:
        widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        # A pasted key with a line break would be stored and fail later as a connection error: refuse it here
        # (the message never repeats the value).
        return guard_field(forms.CharField(widget=widget, strip=False, max_length=4096, **common), spec.label)
    if spec.kind == "url":
        return forms.URLField(assume_scheme="https", max_length=2048,
                              widget=forms.URLInput(attrs={"placeholder": "https://your-api.com/v1"}), **common)
    if spec.kind == "int":
        return forms.IntegerField(min_value=1, max_value=1_000_000, initial=spec.default, **common)
    if spec.kind == "bool":
        return forms.BooleanField(initial=spec.default, **{**common, "required": False})
    if spec.kind == "choice":
        return forms.ChoiceField(choices=[(c, c) for c in spec.choices], initial=spec.default, **common)
    return forms.CharField(max_length=255, initial=spec.default, **common)


class ComponentForm(forms.Form):
    """Base of the generated per-kind forms. `existing` is the saved component on an edit form."""

    spec: Kind

    def __init__(self, *args, existing=None, **kwargs):
        kwargs.setdefault("prefix", self.spec.slug)
        super().__init__(*args, **kwargs)
        self.existing = existing
        stored = existing.secrets if existing is not None else {}
        for name in self.spec.secret_fields:
            if name in stored:
                field = self.fields[name]
                field.required = False
                if self.spec.field(name).reusable:
                    # Subject and expiry only: the certificate itself is never sent back.
                    field.help_text = (f"Stored: {certs.describe(stored[name])}. Leave blank to keep it, paste "
                                       "another to replace it.")
                    self.fields[f"{name}_remove"] = forms.BooleanField(
                        required=False, label=f"Remove the stored {field.label.split(' (')[0]}")
                else:
                    field.help_text = (f"{field.help_text}. Stored — leave blank to keep it; re-enter it if you "
                                       "change the address.")
        for name, field in self.fields.items():
            if field.required:
                field.widget.attrs.setdefault("aria-required", "true")
            if field.help_text:
                # Not self[name]: a BoundField made now would freeze the help text before it is adjusted.
                field.widget.attrs.setdefault("aria-describedby", f"{self.auto_id % self.add_prefix(name)}_helptext")

    def split(self) -> tuple[dict, dict]:
        """(values, secrets) from cleaned_data, in the registry's field names. Blank secrets are left out."""
        values = {n: self.cleaned_data.get(n) for n in self.spec.plain_fields}
        secrets = {n: self.cleaned_data[n] for n in self.spec.secret_fields if self.cleaned_data.get(n)}
        for name in self.spec.secret_fields:
            if self.cleaned_data.get(f"{name}_remove") and name not in secrets:
                secrets[name] = None  # the service removes it
        return values, secrets

    def raw_values(self) -> dict:
        """What the user typed for the non-secret fields (valid or not), to keep it on a re-render."""
        if not self.is_bound:
            return {}
        return {n: self[n].value() for n in self.spec.plain_fields}


@cache
def component_form_class(kind: str) -> type[ComponentForm]:
    spec = KINDS[kind]
    fields = {f.name: _form_field(f) for f in spec.fields}
    return type(f"{spec.slug.title().replace('_', '')}ComponentForm", (ComponentForm,), {"spec": spec, **fields})


def component_form(kind: str, data=None, *, existing=None, initial=None) -> ComponentForm:
    if initial is None and existing is not None:
        initial = dict(existing.values)
    return component_form_class(kind)(data, existing=existing, initial=initial)


class ComponentSection:
    """One switch of the panel (LLM, Embeddings, …) with its fields."""

    def __init__(self, spec: Kind, data=None, *, existing=None, bind: bool = True):
        self.spec = spec
        self.kind = spec.slug
        self.existing = existing
        self.switch_name = f"{spec.slug}-enabled"
        self.cleaned = None
        self.section_url = self.test_url = ""
        if data is not None:
            self.on = bool(data.get(self.switch_name))
        else:
            self.on = bool(existing is not None and existing.enabled)
        if data is not None and self.on and bind:
            self.form = component_form(self.kind, data, existing=existing)
            # This form is only rendered again after an error; typed secrets are never sent back.
            for name in spec.secret_fields:
                if data.get(f"{self.kind}-{name}"):
                    field = self.form.fields[name]
                    field.help_text = f"Type the {field.label.lower()} again: it is never sent back to the browser."
        elif data is not None:
            # A re-render (a switch flipped): keep what was typed, but show no errors yet.
            typed = {n: data.get(f"{self.kind}-{n}") for n in spec.plain_fields if f"{self.kind}-{n}" in data}
            base = dict(existing.values) if existing is not None else {}
            self.form = component_form(self.kind, existing=existing, initial={**base, **typed})
        else:
            self.form = component_form(self.kind, existing=existing)

    @property
    def test_include(self) -> str:
        """What Test Connection sends: this component's fields, and the switches and fields of the others its
        check depends on (the embeddings' Dimensions for the vector store), as typed but not yet saved."""
        selectors = [f"#byoi-{self.kind}-fields"]
        for _, other, name in self.spec.check_context:
            selectors += ["#id_byoi-enabled", f"#id_{other}-enabled", f"#id_{other}-{name}"]
        return ", ".join(dict.fromkeys(selectors))

    def add_errors(self, errors: dict) -> None:
        for name, message in errors.items():
            self.form.add_error(name if name in self.form.fields else None, message)

    @property
    def was_enabled(self) -> bool:
        """Whether a saved component is currently in use (turning it off then deserves a warning)."""
        return self.existing is not None and self.existing.enabled

    @property
    def disabling(self) -> bool:
        return self.was_enabled and not self.on


class ByoiPanel:
    """The "BYOI (Bring Your Own Infrastructure)" panel of the create form and of a chatbot's BYOI settings.

    `data` is the POSTed form (or None for a fresh page); `bind=False` re-renders after a toggle without
    validating. `locked` panels (plans without BYOI) show the plan names and render no fields."""

    enabled_name = "byoi-enabled"

    def __init__(self, data=None, *, account, chatbot=None, bind: bool = True):
        self.account = account
        self.chatbot = chatbot
        self.locked = not account.plan.byoi_allowed
        existing = {c.kind: c for c in chatbot.components.all()} if chatbot is not None else {}
        if data is not None:
            self.enabled = bool(data.get(self.enabled_name))
        else:
            self.enabled = bool(chatbot is not None and chatbot.byoi_enabled)
        self.was_enabled = bool(chatbot is not None and chatbot.byoi_enabled)
        self.sections = [ComponentSection(spec, data, existing=existing.get(slug), bind=bind)
                         for slug, spec in KINDS.items()]
        self.errors: list[str] = []
        bot = [chatbot.id] if chatbot is not None else []
        self.panel_url = reverse("byoi:chatbot_panel" if bot else "byoi:panel", args=bot)
        for s in self.sections:
            s.section_url = reverse("byoi:chatbot_section" if bot else "byoi:section", args=[*bot, s.kind])
            s.test_url = reverse("byoi:chatbot_test_start" if bot else "byoi:test_start", args=[*bot, s.kind])

    @property
    def plan_names(self) -> str:
        return byoi_plans_text()

    @property
    def egress_addresses(self) -> list[str]:
        """The addresses WizChat connects from (EGRESS_SOURCE_ADDRESSES), for customers' firewalls."""
        return netguard.egress_sources()

    def __iter__(self):
        return iter(self.sections)

    def section(self, kind: str) -> ComponentSection:
        return next(s for s in self.sections if s.kind == kind)

    @property
    def active_sections(self) -> list[ComponentSection]:
        """Sections whose fields are submitted: the panel is on and the component's switch too."""
        if not self.enabled or self.locked:
            return []
        return [s for s in self.sections if s.on]

    @property
    def disabling(self) -> list[ComponentSection]:
        """Saved components in use that this submission turns off (one by one, or with BYOI as a whole)."""
        if self.was_enabled and not self.enabled:
            return [s for s in self.sections if s.was_enabled]
        if not self.enabled:
            return []
        return [s for s in self.sections if s.disabling]

    @property
    def requested(self) -> bool:
        """Whether the submission asks for BYOI at all (a locked panel's crafted form included)."""
        return self.enabled or (self.locked and any(s.on for s in self.sections))

    def is_valid(self) -> bool:
        """Field checks, then the service's own validation, so every error shows next to its field at once."""
        valid = True
        for section in self.active_sections:
            form = section.form
            if not form.is_valid():
                valid = False
                continue
            values, secrets = form.split()
            try:
                section.cleaned = services.component_validate(section.kind, values, secrets, section.existing)
            except services.ComponentInvalid as error:
                section.add_errors(error.errors)
                valid = False
        return valid and not self.errors

    def save(self, chatbot, *, actor=None, hold=frozenset()) -> list:
        """Apply the submission to `chatbot` through the services; call inside a transaction.

        `hold`: kinds whose switch waits for their data to be copied (byoi.moves): one turned on is saved but
        stays off, one turned off stays on, and BYOI stays on while any of them does.
        Raises PlanLimitReached (plans without BYOI, whatever was sent) or ComponentInvalid (the errors are
        then on the fields); the caller's transaction rolls everything back."""
        saved, invalid = [], False
        if self.requested:
            services.byoi_set_enabled(chatbot, True, actor=actor)
        for section in self.active_sections:
            values, secrets = section.form.split()
            enabled = section.was_enabled if section.kind in hold else True
            try:
                saved.append(services.component_save(chatbot, section.kind, values=values, secrets=secrets,
                                                     enabled=enabled, actor=actor))
            except services.ComponentInvalid as error:
                section.add_errors(error.errors)
                invalid = True
        if invalid:
            raise services.ComponentInvalid({})
        held_off = [s for s in self.disabling if s.kind in hold]
        if self.enabled or held_off:
            for section in self.disabling:
                if section.kind not in hold:
                    services.component_disable(chatbot, section.kind, actor=actor)
        elif chatbot.byoi_enabled:
            services.byoi_set_enabled(chatbot, False, actor=actor)
        return saved

    def data_change(self) -> DataChange | None:
        """What this submission changes in where the chatbot's data lives (None: nothing, or no data yet)."""
        chatbot = self.chatbot
        if chatbot is None or self.locked or not chatbot.documents.exists():
            return None
        before_on = chatbot.byoi_enabled
        after = {s.kind for s in self.active_sections}
        before = {s.kind for s in self.sections if before_on and s.was_enabled}
        change = DataChange()
        for kind in STORE_KINDS:
            if kind in after and kind not in before:
                change.switch_on.append(kind)
            elif kind in before and kind not in after:
                change.switch_off.append(kind)
        change.dims = (_embeddings_config(self, "embeddings" in before, saved=True)[1],
                       _embeddings_config(self, "embeddings" in after, saved=False)[1])
        old = _embeddings_config(self, "embeddings" in before, saved=True)
        new = _embeddings_config(self, "embeddings" in after, saved=False)
        change.embeddings_change = old != new
        if change.embeddings_change and "vector_store" in change.moving:
            # The vectors are computed again on their way to the new store; the new embeddings wait for them.
            change.reembed = True
            if "embeddings" in after and "embeddings" not in before:
                change.switch_on.append("embeddings")
            elif "embeddings" in before and "embeddings" not in after:
                change.switch_off.append("embeddings")
        change.byoi_off = bool(change.switch_off) and self.was_enabled and not self.enabled
        return change if change.moving or change.dims_change else None


class DataChange:
    """A saved change that moves the chatbot's data (byoi.moves holds it until the copy is verified)."""

    def __init__(self):
        self.switch_on: list[str] = []
        self.switch_off: list[str] = []
        self.byoi_off = False
        self.reembed = False
        self.embeddings_change = False
        self.dims: tuple[int, int] = (0, 0)

    @property
    def moving(self) -> list[str]:
        return [k for k in STORE_KINDS if k in self.switch_on or k in self.switch_off]

    @property
    def hold(self) -> set[str]:
        return {*self.switch_on, *self.switch_off}

    @property
    def dims_change(self) -> bool:
        return self.dims[0] != self.dims[1]

    @property
    def token(self) -> str:
        """What the confirmation of a dimension change confirms (a different change asks again)."""
        return f"{self.dims[0]}-{self.dims[1]}-{int('vector_store' in self.moving)}"

    def dimension_warning(self) -> str:
        before, after = self.dims
        text = (f"Your documents are indexed with the current embeddings ({before} numbers per passage); the new "
                f"embeddings give {after}.")
        if "vector_store" in self.moving:
            return (f"{text} WizChat will re-index every document into the new vector store with the new "
                    "embeddings. Until that is finished and checked, your chatbot keeps answering with the current "
                    "settings.")
        return (f"{text} The vector store stays the same, so your chatbot could no longer search the documents "
                "already in it: its answers would come without sources. To keep them, switch the vector store in "
                "the same save — WizChat then re-indexes the documents into it — or add the documents again "
                "after saving.")


def _embeddings_config(panel: ByoiPanel, custom: bool, *, saved: bool) -> tuple[str, int]:
    """(model, dimensions) of the embeddings the chatbot searches with: before (saved) or after this save."""
    if custom:
        section = panel.section("embeddings")
        values = section.existing.values if saved or section.cleaned is None else section.cleaned[0]
        return values.get("model") or "", int(values.get("dimensions") or 0)
    values = resolver.default_settings("embeddings")
    return values.get("model") or "", int(values.get("dimensions") or 0)


def typed_check_context(kind: str, data) -> dict | None:
    """What a submitted panel says of the other components `kind`'s Test Connection depends on (see
    services.check_context): {(kind, field): value, or None when that component is off}; None when the
    submission did not include the panel's switches (a Re-test: the saved settings count)."""
    if data is None or not data.get("byoi-enabled"):
        return None
    typed = {}
    for _, other, name in KINDS[kind].check_context:
        value = None
        if data.get(f"{other}-enabled"):
            field = KINDS[other].field(name)
            raw = (data.get(f"{other}-{name}") or "").strip()
            try:
                value = field.coerce(raw) if raw else field.default
            except ValueError:
                value = None  # not valid yet: its own form says so; the check uses the default meanwhile
        typed[(other, name)] = value
    return typed


def save_warnings(saved, disabling, held=frozenset()) -> list[str]:
    """What to warn about after saving components: untested or failing ones, and data left behind when
    disabling (the create page and the BYOI settings page both show these). `held`: kinds whose switch waits
    for their data to be copied (the data move page says what happens to them)."""
    warnings = []
    disabling = [s for s in disabling if s.kind not in held]
    untested = [c.spec.label for c in saved if c.status == "untested"]
    failed = [c.spec.label for c in saved if c.status == "failed"]
    if untested:
        warnings.append(f"Saved untested: {', '.join(untested)}. A component stays “untested” until "
                        "Test Connection passes with these exact settings (use Re-test).")
    if failed:
        warnings.append(f"Saved, but the last Test Connection of these settings failed: {', '.join(failed)}. "
                        "See the error and hint below, fix the settings and Re-test.")
    if disabling:
        names = ", ".join(s.spec.label for s in disabling)
        warnings.append(f"Now using WizChat defaults for: {names}. Data already in your infrastructure stays "
                        "there and is not copied to WizChat.")
    return warnings


def data_move_rows(move) -> list[dict]:
    """One row per store of a data move, for its page: where from, where to, how far the copy is."""
    components = {c.kind: c for c in move.chatbot.components.all()}
    rows = []
    for kind in move.kinds:
        component = components.get(kind)
        custom = "your infrastructure"
        if component is not None:
            where = resolver.location_summary(kind, component.values)
            custom = f"your infrastructure ({where})" if where else custom
        going = kind in move.switch_on
        progress = (move.progress or {}).get(kind, {})
        checked = (move.verified or {}).get(kind)
        rows.append({"kind": kind, "label": KINDS[kind].label, "unit": KINDS[kind].move_unit,
                     "source": "WizChat default" if going else custom, "target": custom if going else "WizChat default",
                     "done": progress.get("done", 0), "total": progress.get("total", 0),
                     "checked": checked["source"] if checked else None})
    return rows

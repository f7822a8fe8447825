"""The BYOI section of the chatbot page: one row per kind, custom or WizChat default, with its status."""

from dataclasses import dataclass, field

from django.urls import reverse

from wizchat.plans import byoi_plan_names

from .errors import HINTS
from .models import BYOIComponent, ConnectionTest
from .registry import KINDS, Kind


def byoi_plans_text() -> str:
    """"Pro, Pro+, Business, and Enterprise", as the spec words it."""
    names = byoi_plan_names()
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])}, and {names[-1]}"


@dataclass
class ComponentStatus:
    kind: str
    spec: Kind
    custom: bool  # False: the WizChat default serves this kind
    component: BYOIComponent | None = None
    location: list[tuple[str, object]] = field(default_factory=list)
    hint: str = ""
    test: ConnectionTest | None = None  # a running Re-test (polled), or the one that just finished
    retest_url: str = ""

    @property
    def status(self) -> str:
        return self.component.status if self.custom else "default"


def component_status(chatbot, kind: str, component: BYOIComponent | None,
                     test: ConnectionTest | None = None) -> ComponentStatus:
    spec = KINDS[kind]
    custom = bool(chatbot.byoi_enabled and component is not None and component.enabled)
    row = ComponentStatus(kind=kind, spec=spec, custom=custom, component=component if custom else None)
    if custom:
        row.location = [(f.label, component.values[f.name]) for f in spec.location_fields
                        if f.name in component.values]
        row.hint = HINTS.get(component.error_code, "") if component.status == "failed" else ""
        row.test = test
        row.retest_url = reverse("byoi:retest", args=[chatbot.id, kind])
    return row


def status_context(request, chatbot) -> dict:
    """Context for byoi/partials/_status_panel.html on the chatbot page."""
    components = {c.kind: c for c in chatbot.components.all()}
    running = {}
    unfinished = (ConnectionTest.objects.filter(component__chatbot=chatbot)
                  .exclude(state__in=[ConnectionTest.State.OK, ConnectionTest.State.FAILED]).order_by("created"))
    for test in unfinished:
        running[test.component_id] = test  # the newest wins
    rows = []
    for kind in KINDS:
        component = components.get(kind)
        rows.append(component_status(chatbot, kind, component,
                                     running.get(component.pk) if component is not None else None))
    plan = chatbot.account.plan
    return {
        "byoi_rows": rows,
        "byoi_custom_count": sum(row.custom for row in rows),
        "byoi_allowed": plan.byoi_allowed,
        "byoi_plans": byoi_plans_text(),
        "byoi_settings_url": reverse("byoi:settings", args=[chatbot.id]),
        # BYOI was switched on under a plan that included it; the chatbot now stops rather than fall back.
        "byoi_suspended": chatbot.byoi_enabled and not plan.byoi_allowed,
    }

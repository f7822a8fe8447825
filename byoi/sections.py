"""The BYOI section of the chatbot page: one row per kind, custom or WizChat default, with its status."""

from dataclasses import dataclass, field

from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

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
        """What WizChat last saw of it: "failing" (real traffic), "ok", "failed" (Test Connection), "untested",
        or "default" for a WizChat default."""
        return self.component.seen_status if self.custom else "default"

    @property
    def from_traffic(self) -> bool:
        """Whether the status comes from real traffic (newer than the last Test Connection)."""
        return self.custom and self.component.traffic_is_newer

    @property
    def failing_since(self) -> str:
        """"10:42" today, else "3 Dec, 10:42" (the server's time zone, as every time on the page)."""
        since = self.component.traffic_failing_since if self.status == "failing" else None
        if since is None:
            return ""
        since, now = timezone.localtime(since), timezone.localtime()
        return date_format(since, "H:i" if since.date() == now.date() else "j M, H:i")

    @property
    def error_code(self) -> str:
        if not self.custom:
            return ""
        if self.status == "failing":
            return self.component.traffic_error_code
        return self.component.error_code if self.status == "failed" else ""


def component_status(chatbot, kind: str, component: BYOIComponent | None,
                     test: ConnectionTest | None = None) -> ComponentStatus:
    spec = KINDS[kind]
    custom = bool(chatbot.byoi_enabled and component is not None and component.enabled)
    row = ComponentStatus(kind=kind, spec=spec, custom=custom, component=component if custom else None)
    if custom:
        row.location = [(f.label, component.values[f.name]) for f in spec.location_fields
                        if f.name in component.values]
        row.hint = HINTS.get(row.error_code, "") if row.error_code else ""
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

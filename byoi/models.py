import json
import uuid

from django.conf import settings
from django.db import models
from django_cryptography.fields import encrypt

from .fingerprint import fingerprint
from .registry import KIND_CHOICES, KINDS


class Status(models.TextChoices):
    UNTESTED = "untested", "Untested"
    OK = "ok", "OK"
    FAILED = "failed", "Failed"


def settings_fingerprint(kind: str, values: dict, secrets: dict) -> str:
    """A digest of every setting including the secrets; identifies 'these exact settings' without storing them."""
    return fingerprint({"kind": kind, "values": values, "secrets": secrets}, key=settings.BYOI_ENCRYPTION_KEY)


class BYOIComponent(models.Model):
    """One customer-run component of a chatbot. Secrets live only in `secret_values` (encrypted)."""

    chatbot = models.ForeignKey("chatbots.Chatbot", on_delete=models.CASCADE, related_name="components")
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    enabled = models.BooleanField(default=True)
    values = models.JSONField(default=dict, blank=True, help_text="Non-secret settings")
    secret_values = encrypt(models.TextField(default="{}", blank=True))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNTESTED)
    last_checked = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    tested_fingerprint = models.CharField(max_length=64, blank=True)
    # What WizChat last saw of the component in real traffic (chat, ingestion, conversations), for the settings
    # of `traffic_fingerprint`: written when a failure is seen and when traffic works again after one (byoi.activity),
    # never on every call. The chatbot page shows whichever is newer, this or the last Test Connection.
    traffic_seen = models.DateTimeField(null=True, blank=True)
    traffic_failing_since = models.DateTimeField(null=True, blank=True)
    traffic_error_code = models.CharField(max_length=32, blank=True)
    traffic_during = models.CharField(max_length=40, blank=True)
    traffic_fingerprint = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chatbot", "kind"], name="one_component_per_kind")]
        # Processes reload the (few) failing components every few seconds to notice recoveries cheaply.
        indexes = [models.Index(fields=["traffic_failing_since"], name="byoi_component_failing",
                                condition=models.Q(traffic_failing_since__isnull=False))]
        ordering = ["chatbot", "kind"]
        verbose_name = "BYOI component"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.chatbot_id}"

    def __repr__(self) -> str:  # never the secrets
        return f"<BYOIComponent {self.kind} chatbot={self.chatbot_id} enabled={self.enabled} status={self.status}>"

    def clean(self):
        # Plan gating also holds for paths that bypass the services (admin forms, ModelForms).
        from django.core.exceptions import ValidationError

        if self.kind and self.kind not in KINDS:
            raise ValidationError({"kind": "Unknown component kind."})
        if self.enabled and self.chatbot_id and not self.chatbot.account.plan.byoi_allowed:
            from wizchat.plans import byoi_plan_names

            plan = self.chatbot.account.plan.name
            raise ValidationError({"enabled": f"BYOI is not included in the {plan} plan. It is available on "
                                              f"{', '.join(byoi_plan_names())}."})

    @property
    def spec(self):
        return KINDS[self.kind]

    @property
    def secrets(self) -> dict:
        return json.loads(self.secret_values or "{}")

    @secrets.setter
    def secrets(self, value: dict) -> None:
        self.secret_values = json.dumps(value)

    def settings_dict(self) -> dict:
        """Every setting, secrets included, for a backend to connect with. Never render or log this."""
        return {**self.values, **self.secrets}

    def compute_fingerprint(self) -> str:
        return settings_fingerprint(self.kind, self.values, self.secrets)

    @property
    def traffic_is_newer(self) -> bool:
        """Whether real traffic, on these settings, was seen after the last Test Connection."""
        if self.traffic_seen is None or self.traffic_fingerprint != self.fingerprint:
            return False
        return self.last_checked is None or self.traffic_seen > self.last_checked

    @property
    def seen_status(self) -> str:
        """What WizChat last saw: "failing" (real traffic fails), else the last Test Connection's status, or
        "ok" when traffic recovered after it."""
        if self.traffic_is_newer:
            return "failing" if self.traffic_failing_since else Status.OK
        return self.status


class ConnectionTest(models.Model):
    """A Test Connection run: the candidate settings (encrypted) and step-by-step results.

    Celery receives only the id; rows expire after CONNECTION_TEST_TTL_SECONDS."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        OK = "ok", "Passed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("wizchat.Account", on_delete=models.CASCADE, related_name="connection_tests")
    chatbot = models.ForeignKey("chatbots.Chatbot", null=True, blank=True, on_delete=models.CASCADE)
    component = models.ForeignKey(BYOIComponent, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    values = models.JSONField(default=dict, blank=True)
    secret_values = encrypt(models.TextField(default="{}", blank=True))
    fingerprint = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    steps = models.JSONField(default=list, blank=True, help_text="[{name, label, status, code, message, hint, ms}]")
    error_code = models.CharField(max_length=32, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        # The per-minute rate limit, the duplicate check and the TTL purge all filter on these.
        indexes = [models.Index(fields=["account", "created"], name="byoi_conntest_account_created")]

    def __repr__(self) -> str:
        return f"<ConnectionTest {self.id} {self.kind} {self.state}>"

    @property
    def secrets(self) -> dict:
        return json.loads(self.secret_values or "{}")

    @secrets.setter
    def secrets(self, value: dict) -> None:
        self.secret_values = json.dumps(value)

    @property
    def finished_state(self) -> bool:
        return self.state in (self.State.OK, self.State.FAILED)

    @property
    def shown_steps(self) -> list[dict]:
        """The steps as the page shows them. Checks report a step that works but should not stay as it is with the
        status "warning"; a run stored before they did said "ok" for a TLS step that left the connection
        unencrypted (SSL Mode "prefer" or "allow" against a server without SSL): that is a warning too."""
        shown = []
        for step in self.steps or []:
            if (step.get("status") == "ok" and step.get("name") == "tls"
                    and "not be encrypted" in (step.get("message") or "")):
                step = {**step, "status": "warning", "hint": step.get("hint") or (
                    "Anyone on the network path can read this traffic. Enable SSL on the server, then choose "
                    "SSL Mode “require” or stronger.")}
            shown.append(step)
        return shown

    @property
    def warning_count(self) -> int:
        return sum(1 for step in self.shown_steps if step.get("status") == "warning")

    @property
    def failed_step(self) -> dict | None:
        """The step that stopped the run (a dict as stored in `steps`), or None."""
        return next((s for s in self.steps or [] if s.get("status") == "failed"), None)


class SecretDraft(models.Model):
    """What a customer typed into secret fields of a form that came back with an error, kept server-side
    (encrypted) so they need not type it again. The page holds only this row's id; rows expire after
    byoi.drafts.TTL_MINUTES and are deleted when the form is saved."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("wizchat.Account", on_delete=models.CASCADE, related_name="secret_drafts")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # {kind: {"secrets": {name: value}, "bound": {name: value of each field that rebinds the secret}}}
    payload = encrypt(models.TextField(default="{}", blank=True))
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["created"], name="byoi_secretdraft_created")]

    def __repr__(self) -> str:  # never the secrets
        return f"<SecretDraft {self.id}>"

    @property
    def content(self) -> dict:
        return json.loads(self.payload or "{}")

    @content.setter
    def content(self, value: dict) -> None:
        self.payload = json.dumps(value)


class AuditEvent(models.Model):
    """Who changed, tested, enabled or rotated what. Never holds a secret value."""

    account = models.ForeignKey("wizchat.Account", null=True, on_delete=models.SET_NULL)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    chatbot_id = models.UUIDField(null=True, blank=True)
    action = models.CharField(max_length=50)
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]


class DataMove(models.Model):
    """A job that copies a chatbot's data to the stores a saved BYOI change switches it to, then switches.

    The change is saved but held: the components it turns on are saved disabled, the ones it turns off stay
    enabled, so chat keeps using the old stores while the job copies (byoi.moves). Only once the copy is
    verified (every source item is present in the target) are `switch_on` enabled and `switch_off` disabled.
    Nothing in the source is deleted. Holds no secret: the settings stay in the components."""

    class State(models.TextChoices):
        OFFERED = "offered", "Waiting for your choice"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Copying"
        VERIFYING = "verifying", "Checking the copy"
        DONE = "done", "Switched"
        FAILED = "failed", "Stopped"
        CANCELLED = "cancelled", "Kept the current stores"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chatbot = models.ForeignKey("chatbots.Chatbot", on_delete=models.CASCADE, related_name="data_moves")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    switch_on = models.JSONField(default=list, blank=True, help_text="Kinds enabled once the copy is verified")
    switch_off = models.JSONField(default=list, blank=True, help_text="Kinds disabled once the copy is verified")
    byoi_off = models.BooleanField(default=False, help_text="Turn the chatbot's BYOI switch off at the switch")
    reembed = models.BooleanField(default=False, help_text="The embeddings change: vectors are computed again")
    state = models.CharField(max_length=10, choices=State.choices, default=State.OFFERED)
    # {kind: {"total": n, "done": m, "counted": bool}} while copying; {kind: {"source": n, "missing": 0}} verified
    progress = models.JSONField(default=dict, blank=True)
    verified = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    error_hint = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __repr__(self) -> str:
        return f"<DataMove {self.id} {self.state}>"

    @property
    def open(self) -> bool:
        """Still holding a change back (the chatbot uses its old stores until it is done or cancelled)."""
        return self.state not in (self.State.DONE, self.State.CANCELLED)

    @property
    def finished_state(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED, self.State.CANCELLED, self.State.OFFERED)

    @property
    def kinds(self) -> list[str]:
        """The store kinds whose data is copied, in the registry's order."""
        moving = {*self.switch_on, *self.switch_off}
        return [k for k in KINDS if k in moving and KINDS[k].stores_data]

    @property
    def percent(self) -> int:
        totals = [(p.get("done", 0), p.get("total", 0)) for p in (self.progress or {}).values()]
        total = sum(t for _, t in totals)
        if self.state in (self.State.VERIFYING, self.State.DONE):
            return 100
        if not total:
            return 0
        return min(99, int(100 * sum(min(d, t) for d, t in totals) / total))

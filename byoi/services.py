"""BYOI services: validating, saving, enabling and testing components. Views, the admin, the API and
management commands call these; plan gating, rate limits and audit events live here, whatever the path."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from wizchat.celery import send_on_commit
from wizchat.models import Account
from wizchat.plans import PlanLimitReached, plan_require_byoi  # noqa: F401 - PlanLimitReached re-exported

from .audit import audit_record
from .checks import StepResult, check_run
from .envvars import settings_to_env
from .errors import NotFound
from .models import BYOIComponent, ConnectionTest, Status, settings_fingerprint
from .registry import KINDS, STORE_KINDS
from .resolver import ByoiUnavailable, custom_components, invalidate, resolve_defaults
from .scrub import secrets_known

logger = logging.getLogger(__name__)

class ComponentInvalid(Exception):
    """Settings a customer must correct. `.errors` maps a field name to a message saying what to fix."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


class RateLimited(Exception):
    """Too many Test Connection runs for the account in the last minute; the message says what to do."""


# --- validation -------------------------------------------------------------------------------------------


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _weakened_message(secret, guard, old_values: dict, new_values: dict) -> str:
    """Why a stored secret must be typed again when the connection protecting it gets weaker."""
    if guard.kind == "bool":
        change = f"{guard.label} is being turned off"
    else:
        change = f"the SSL mode goes from {old_values.get(guard.name, guard.default)} to {new_values[guard.name]}"
    return (f"Re-enter the {secret.label.lower()}: {change}, so it would travel less protected. "
            "Type it again to confirm.")


def component_validate(kind: str, values: dict, secrets: dict,
                       existing: BYOIComponent | None) -> tuple[dict, dict]:
    """Clean `values`/`secrets` for `kind`: typed values, defaults applied, required fields present.

    A blank secret keeps the stored one, unless a field that rebinds it (host, port, database, username,
    endpoint) changed: a new server must never receive the old password; nor when the SSL protecting it is
    weakened (a lower SSL mode, SSL off): whoever does that confirms by typing the secret again. A secret given as None is removed
    (optional ones only)."""
    if kind not in KINDS:
        raise ComponentInvalid({"kind": f"Unknown component kind. Choose one of: {', '.join(KINDS)}."})
    spec = KINDS[kind]
    values, secrets = dict(values or {}), dict(secrets or {})
    errors: dict[str, str] = {}
    clean_values: dict = {}
    for field in spec.fields:
        if field.secret:
            continue
        raw = values.get(field.name)
        if _blank(raw):
            if field.default is not None:
                clean_values[field.name] = field.default
            elif field.required:
                errors[field.name] = f"{field.label} is required."
            continue
        try:
            clean_values[field.name] = field.coerce(raw)
        except ValueError as error:
            errors[field.name] = str(error)

    stored = existing.secrets if existing is not None and existing.kind == kind else {}
    old_values = existing.values if existing is not None and existing.kind == kind else {}
    rebound = [f for f in spec.fields if f.rebinds_secret and existing is not None
               and f.name in clean_values and clean_values.get(f.name) != old_values.get(f.name)]
    weakened = [f for f in spec.fields if existing is not None and f.name in clean_values
                and f.weakened(old_values.get(f.name, f.default), clean_values[f.name])]
    clean_secrets: dict = {}
    for field in spec.fields:
        if not field.secret:
            continue
        if field.name in secrets and secrets[field.name] is None and not field.required:
            continue  # removed on purpose (a stored CA certificate's "Remove"), not left blank
        raw = secrets.get(field.name, values.get(field.name))
        if not _blank(raw):
            if not isinstance(raw, str):
                errors[field.name] = f"{field.label} must be text."
                continue
            try:
                clean_secrets[field.name] = field.coerce_secret(raw)
            except ValueError as error:
                errors[field.name] = str(error)
            continue
        if stored.get(field.name):
            if rebound and not field.reusable:
                what = rebound[0].label.lower()
                errors[field.name] = f"Re-enter the {field.label.lower()}: the {what} changed."
            elif weakened and not field.reusable:
                errors[field.name] = _weakened_message(field, weakened[0], old_values, clean_values)
            else:
                clean_secrets[field.name] = stored[field.name]
        elif field.required:
            errors[field.name] = f"{field.label} is required."
    if errors:
        raise ComponentInvalid(errors)
    return clean_values, clean_secrets


# --- components -------------------------------------------------------------------------------------------


def _changed(old_values: dict, new_values: dict, old_secrets: dict, new_secrets: dict) -> list[str]:
    names = {k for k in {*old_values, *new_values} if old_values.get(k) != new_values.get(k)}
    names |= {k for k in {*old_secrets, *new_secrets} if old_secrets.get(k) != new_secrets.get(k)}
    return sorted(names)


def _forget_backend(component_id) -> None:
    transaction.on_commit(lambda: invalidate(component_id))


def _adopt_test_result(component: BYOIComponent) -> None:
    """Take the status of a finished Test Connection run on exactly these settings (the form tested them
    before saving), or reset it to untested."""
    if component.fingerprint and component.fingerprint == component.tested_fingerprint:
        return
    test = (ConnectionTest.objects
            .filter(account_id=component.chatbot.account_id, kind=component.kind, fingerprint=component.fingerprint,
                    state__in=[ConnectionTest.State.OK, ConnectionTest.State.FAILED])
            .order_by("-finished").first())
    if test is None:
        component.status = Status.UNTESTED
        component.last_checked = None
        component.error_code = component.error_message = ""
        return
    _apply_result(component, test)


def component_save(chatbot, kind: str, *, values: dict, secrets: dict, enabled: bool = True,
                   actor=None) -> BYOIComponent:
    """Create or update the chatbot's component of `kind` (plan-gated; validated; audited without secrets)."""
    plan_require_byoi(chatbot.account)
    try:
        return _component_save(chatbot, kind, values=values, secrets=secrets, enabled=enabled, actor=actor)
    except IntegrityError:
        # Two first saves of the same kind raced; the loser now finds the winner's row and updates it.
        return _component_save(chatbot, kind, values=values, secrets=secrets, enabled=enabled, actor=actor)


def _component_save(chatbot, kind: str, *, values: dict, secrets: dict, enabled: bool, actor) -> BYOIComponent:
    with transaction.atomic():
        existing = (BYOIComponent.objects.select_for_update()
                    .select_related("chatbot__account").filter(chatbot=chatbot, kind=kind).first())
        clean_values, clean_secrets = component_validate(kind, values, secrets, existing)
        component = existing or BYOIComponent(chatbot=chatbot, kind=kind)
        changed = _changed(component.values if existing else {}, clean_values,
                           component.secrets if existing else {}, clean_secrets)
        component.values = clean_values
        component.secrets = clean_secrets
        component.enabled = enabled
        component.fingerprint = component.compute_fingerprint()
        _adopt_test_result(component)
        component.save()
        audit_record("byoi.component_saved", chatbot=chatbot, actor=actor, kind=kind, enabled=enabled,
                     created=existing is None, changed=changed)
        _forget_backend(component.pk)
    return component


def component_set_enabled(component: BYOIComponent, enabled: bool, actor=None) -> BYOIComponent:
    """Turn one component on or off. Turning on is plan-gated; turning off never is."""
    if enabled:
        plan_require_byoi(component.chatbot.account)
    if component.enabled != enabled:
        component.enabled = enabled
        component.save(update_fields=["enabled", "updated"])
        audit_record("byoi.component_enabled" if enabled else "byoi.component_disabled",
                     chatbot=component.chatbot, actor=actor, kind=component.kind)
        _forget_backend(component.pk)
    return component


def component_disable(chatbot, kind: str, actor=None) -> BYOIComponent | None:
    """Stop using the chatbot's custom component of `kind`; its settings are kept. Data is not migrated."""
    component = BYOIComponent.objects.filter(chatbot=chatbot, kind=kind).select_related("chatbot__account").first()
    if component is None:
        return None
    return component_set_enabled(component, False, actor=actor)


def component_delete(component: BYOIComponent, actor=None) -> None:
    """Forget the component's settings (secrets included). Data in the customer's infrastructure stays."""
    chatbot, kind, pk = component.chatbot, component.kind, component.pk
    with transaction.atomic():
        component.delete()
        audit_record("byoi.component_deleted", chatbot=chatbot, actor=actor, kind=kind)
        _forget_backend(pk)


def byoi_set_enabled(chatbot, enabled: bool, actor=None):
    """The chatbot-level BYOI switch. Enabling is plan-gated; disabling always works (defaults take over)."""
    if enabled:
        plan_require_byoi(chatbot.account)
    if chatbot.byoi_enabled != enabled:
        chatbot.byoi_enabled = enabled
        chatbot.save(update_fields=["byoi_enabled", "updated"])
        audit_record("byoi.enabled" if enabled else "byoi.disabled", chatbot=chatbot, actor=actor)
    return chatbot


def components_to_env(chatbot) -> dict[str, str]:
    """The CUSTOM_* variables for the chatbot's enabled components (secrets included: for the runtime only).

    Empty when the chatbot's BYOI switch is off; raises ByoiUnavailable when its plan no longer allows
    BYOI, so a deployment never silently runs on defaults."""
    env: dict[str, str] = {}
    for component in custom_components(chatbot).values():
        env.update(settings_to_env(component.kind, component.settings_dict()))
    return env


# --- Test Connection --------------------------------------------------------------------------------------


def _running_window() -> timedelta:
    """How long a queued/running test may take before it is considered lost (worker gone)."""
    per_step = settings.BYOI_CONNECT_TIMEOUT + settings.BYOI_OPERATION_TIMEOUT
    return timedelta(seconds=max(60.0, 7 * per_step + 30))


def check_context(kind: str, chatbot=None, typed: dict | None = None) -> dict:
    """{setting: value} that Test Connection of `kind` needs from the chatbot's other components (the
    registry's Kind.check_context: the vector store is probed with the embeddings' real dimensions).

    `typed` is what an unsaved form says, {(kind, field): value}, None for a component switched off there;
    otherwise the chatbot's saved components count; WizChat's default fills in the rest."""
    found = {}
    for setting, other, name in KINDS[kind].check_context:
        value = None
        if typed is not None and (other, name) in typed:
            value = typed[(other, name)]
        elif chatbot is not None:
            try:
                component = custom_components(chatbot).get(other)
            except ByoiUnavailable:
                component = None
            value = component.values.get(name) if component is not None else None
        if value is None:
            value = import_string(KINDS[other].defaults)().get(name)
        if value is not None:
            found[setting] = value
    return found


def connection_test_start(account: Account, kind: str, values: dict, secrets: dict, *, chatbot=None,
                          component: BYOIComponent | None = None, actor=None, rate_limit: bool = True,
                          queue: bool = True, typed_context: dict | None = None) -> ConnectionTest:
    """Queue a Test Connection run of these settings. Celery receives only the row's id.

    Plan-gated; limited to BYOI_TEST_RATE_LIMIT runs per account per minute (`rate_limit=False`: operators'
    sweeps); a still-running test of the same settings is returned instead of queuing a duplicate.
    `queue=False`: the caller runs it with connection_test_run. `typed_context`: see check_context."""
    from .tasks import connection_test_task

    plan_require_byoi(account)
    if component is not None:
        if component.chatbot.account_id != account.pk or component.kind != kind:
            raise NotFound("No such component")
        chatbot = component.chatbot
    elif chatbot is not None:
        if chatbot.account_id != account.pk:
            raise NotFound("No such chatbot")
        component = BYOIComponent.objects.filter(chatbot=chatbot, kind=kind).first()
    clean_values, clean_secrets = component_validate(kind, values, secrets, component)
    fingerprint = settings_fingerprint(kind, clean_values, clean_secrets)
    now = timezone.now()
    with transaction.atomic():
        # The account row lock serializes the rate limit and the duplicate check between concurrent requests.
        Account.objects.select_for_update().get(pk=account.pk)
        running = (ConnectionTest.objects
                   .filter(account=account, fingerprint=fingerprint, created__gte=now - _running_window(),
                           state__in=[ConnectionTest.State.QUEUED, ConnectionTest.State.RUNNING])
                   .first())
        if running is not None:
            return running
        recent = ConnectionTest.objects.filter(account=account, created__gte=now - timedelta(minutes=1)).count()
        if rate_limit and recent >= settings.BYOI_TEST_RATE_LIMIT:
            raise RateLimited(f"You can run {settings.BYOI_TEST_RATE_LIMIT} connection tests a minute. "
                              "Wait a minute and try again.")
        ConnectionTest.objects.filter(account=account, created__lt=now - _ttl()).delete()
        # The values also carry what the checks need from the rest of the chatbot (not in the fingerprint).
        test = ConnectionTest(account=account, chatbot=chatbot, component=component, kind=kind,
                              values={**clean_values, **check_context(kind, chatbot, typed_context)},
                              fingerprint=fingerprint)
        test.secrets = clean_secrets
        test.save()
        audit_record("byoi.connection_test_started", account=account, chatbot=chatbot, actor=actor, kind=kind,
                     test_id=str(test.id))
        test_id = str(test.id)
        if queue:
            send_on_commit(connection_test_task, test_id,
                           unsent=lambda message: _finish_lost(ConnectionTest.objects.get(pk=test_id), message))
    return test


def connection_test_retest(component: BYOIComponent, actor=None) -> ConnectionTest:
    """Test the component's saved settings again (stored secrets included)."""
    return connection_test_start(component.chatbot.account, component.kind, component.values, {},
                                 component=component, actor=actor)


def connection_test_get_for_user(user, test_id) -> ConnectionTest:
    """The test if it belongs to the user's account; NotFound otherwise. A run lost with its worker is closed."""
    if not getattr(user, "is_authenticated", False) or user.pk is None:
        raise NotFound("No account")
    try:
        test = ConnectionTest.objects.get(pk=test_id, account__memberships__user_id=user.pk)
    except (ConnectionTest.DoesNotExist, ValidationError, ValueError, TypeError):  # malformed UUIDs included
        raise NotFound("No such connection test") from None
    if not test.finished_state and test.created < timezone.now() - _running_window():
        _finish_lost(test)
    return test


def _finish_lost(test: ConnectionTest, message: str = "The test did not finish: the background worker did not "
                 "pick it up in time. Try again.") -> None:
    steps = test.steps or []
    test.steps = steps + [StepResult("operation", "Background worker", "failed", "unavailable", message).as_dict()]
    test.state = ConnectionTest.State.FAILED
    test.error_code = "unavailable"
    test.finished = timezone.now()
    test.secrets = {}
    test.save(update_fields=["steps", "state", "error_code", "finished", "secret_values"])


def _apply_result(component: BYOIComponent, test: ConnectionTest) -> None:
    failed = test.failed_step
    component.status = Status.OK if test.state == ConnectionTest.State.OK else Status.FAILED
    component.last_checked = test.finished or timezone.now()
    component.error_code = failed.get("code", "") if failed else ""
    component.error_message = failed.get("message", "") if failed else ""
    component.tested_fingerprint = test.fingerprint


def connection_test_run(test_id) -> ConnectionTest:
    """Run the checks of a queued test (the Celery task calls this), saving each step as it completes.

    The candidate secrets are dropped from the row as soon as the run ends. If the tested settings are
    those of a saved component, the component's status is updated."""
    test = ConnectionTest.objects.select_related("chatbot", "component").get(pk=test_id)
    if test.finished_state:
        return test
    ConnectionTest.objects.filter(pk=test.pk).update(state=ConnectionTest.State.RUNNING)
    secrets = test.secrets
    candidate = {**test.values, **secrets}

    def save_steps(results: list[StepResult]) -> None:
        ConnectionTest.objects.filter(pk=test.pk).update(steps=[r.as_dict() for r in results])

    with secrets_known(secrets.values()):
        results = check_run(test.kind, candidate, on_step=save_steps)
        failed = next((r for r in results if r.status == "failed"), None)
        test.steps = [r.as_dict() for r in results]
        test.state = ConnectionTest.State.FAILED if failed or not results else ConnectionTest.State.OK
        test.error_code = failed.code if failed else ""
        test.finished = timezone.now()
        test.secrets = {}
        with transaction.atomic():
            test.save(update_fields=["steps", "state", "error_code", "finished", "secret_values"])
            candidates = BYOIComponent.objects.select_for_update().filter(fingerprint=test.fingerprint)
            if test.component_id:
                candidates = candidates.filter(pk=test.component_id)
            elif test.chatbot_id:
                candidates = candidates.filter(chatbot_id=test.chatbot_id, kind=test.kind)
            else:
                candidates = candidates.none()
            for component in candidates:
                _apply_result(component, test)
                component.save(update_fields=["status", "last_checked", "error_code", "error_message",
                                              "tested_fingerprint", "updated"])
            audit_record("byoi.connection_test_finished", account=test.account, chatbot=test.chatbot,
                         kind=test.kind, test_id=str(test.id), state=test.state, error_code=test.error_code)
        logger.info("Test Connection %s (%s): %s %s", test.id, test.kind, test.state, test.error_code)
    return test


def _ttl() -> timedelta:
    return timedelta(seconds=settings.CONNECTION_TEST_TTL_SECONDS)


def connection_test_purge(*, dry_run: bool = False, now=None) -> dict:
    """Delete expired tests, and drop candidate secrets any finished test still holds.

    Returns {"expired": n, "secrets_dropped": m}."""
    now = now or timezone.now()
    expired = ConnectionTest.objects.filter(created__lt=now - _ttl())
    finished = ConnectionTest.objects.filter(created__gte=now - _ttl(),
                                             state__in=[ConnectionTest.State.OK, ConnectionTest.State.FAILED])
    holding = [t for t in finished.only("id", "secret_values") if t.secrets]
    counts = {"expired": expired.count(), "secrets_dropped": len(holding)}
    if not dry_run:
        expired.delete()
        for test in holding:
            test.secrets = {}
            test.save(update_fields=["secret_values"])
    return counts


def platform_data_purge(chatbot_id) -> list[str]:
    """Remove a deleted chatbot's data from WizChat's own default stores (tables and graph named for it).

    Customer infrastructure is never touched: its data stays where the customer put it."""
    chatbot_id = uuid.UUID(str(chatbot_id))
    stack = resolve_defaults()
    purged = []
    for kind in STORE_KINDS:
        stack.backend(kind).drop(chatbot_id)
        purged.append(kind)
    return purged

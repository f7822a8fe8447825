"""BYOI views: the panel's HTMX partials, Test Connection and its polling status, Re-test, BYOI settings.

Views translate HTTP only; the work is in byoi.services. Every lookup is scoped to the user's account."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, reswap, retarget

from chatbots.services import chatbot_get_for_user
from wizchat.accounts import account_for_user
from wizchat.formerrors import error_summary
from wizchat.plans import PlanLimitReached
from wizchat.roles import can_manage, manager_required

from . import moves, services
from .activity import FAILURE_QUIET_MINUTES, activity_page
from .drafts import DRAFT_FIELD, draft_discard, draft_fill, draft_keep, draft_mark, tests_attach
from .errors import NotFound
from .forms import ByoiPanel, component_form, data_move_rows, save_warnings, typed_check_context
from .registry import KINDS
from .sections import component_status, status_context


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise Http404("No such component kind")
    return kind


def _chatbot_or_404(request, chatbot_id):
    try:
        return chatbot_get_for_user(request.user, chatbot_id)
    except NotFound as error:
        raise Http404(str(error)) from None


def _chatbot(request, chatbot_id):
    return _chatbot_or_404(request, chatbot_id) if chatbot_id is not None else None


def _rerendered(request, chatbot_id) -> ByoiPanel:
    """The panel re-rendered from what was posted, without validating; kept secrets still say so."""
    account = account_for_user(request.user)
    data, kept = draft_fill(request.POST, account=account, user=request.user)
    panel = ByoiPanel(data, account=account, chatbot=_chatbot(request, chatbot_id), bind=False)
    draft_mark(panel, kept)
    return panel


@login_required
@require_POST
@manager_required("change BYOI settings")
def panel_partial(request, chatbot_id=None):
    """The panel after "Enable BYOI" was flipped: open with its component switches, or collapsed."""
    return render(request, "byoi/partials/_panel.html", {"panel": _rerendered(request, chatbot_id)})


@login_required
@require_POST
@manager_required("change BYOI settings")
def section_partial(request, kind, chatbot_id=None):
    """One component after its switch was flipped: its fields revealed, or hidden."""
    panel = _rerendered(request, chatbot_id)
    return render(request, "byoi/partials/_component.html", {"panel": panel, "section": panel.section(_kind(kind))})


def _test_response(request, context: dict, *, finished: bool):
    if not request.htmx:
        return render(request, "byoi/test_status.html", context)
    html = render_to_string("byoi/partials/_test_status.html", context, request)
    return HttpResponseStopPolling(html) if finished else HttpResponse(html)


def _test_context(test, *, in_row: bool = False) -> dict:
    return {"test": test, "kind": test.kind, "spec": KINDS[test.kind], "in_row": in_row}


def _row_response(request, test):
    """A Re-test on the chatbot page finished: the component's whole row (badge, last check) follows it."""
    component = test.component
    chatbot = _chatbot_or_404(request, component.chatbot_id)
    row = component_status(chatbot, test.kind, component, test)
    response = HttpResponseStopPolling(render_to_string("byoi/partials/_status_row.html", {"row": row}, request))
    return reswap(retarget(response, f"#byoi-row-{test.kind}"), "outerHTML")


def _refused(request, kind: str, errors: list[str]):
    """Test Connection could not start: say what to fix in the component's result area."""
    context = {"kind": kind, "spec": KINDS[kind], "errors": errors}
    return _test_response(request, context, finished=True)


@login_required
@require_POST
@manager_required("test BYOI connections")
def test_start(request, kind, chatbot_id=None):
    """Test Connection: the component's current, unsaved values become a short-lived ConnectionTest."""
    kind = _kind(kind)
    account = account_for_user(request.user)
    chatbot = _chatbot(request, chatbot_id)
    existing = chatbot.components.filter(kind=kind).first() if chatbot is not None else None
    form = component_form(kind, request.POST, existing=existing)
    if not form.is_valid():
        return _refused(request, kind, [_labelled(kind, name, " ".join(errs)) for name, errs in form.errors.items()])
    values, secrets = form.split()
    try:
        test = services.connection_test_start(account, kind, values, secrets, chatbot=chatbot, component=existing,
                                              actor=request.user,
                                              typed_context=typed_check_context(kind, request.POST))
    except NotFound as error:
        raise Http404(str(error)) from None
    except services.ComponentInvalid as error:
        return _refused(request, kind, [_labelled(kind, name, message) for name, message in error.errors.items()])
    except (services.RateLimited, PlanLimitReached) as error:
        return _refused(request, kind, [str(error)])
    return _test_response(request, _test_context(test), finished=test.finished_state)


def _page_number(raw) -> int:
    try:
        return max(1, min(int(raw or 1), 10_000))
    except ValueError:
        return 1


def _labelled(kind: str, name: str, message: str) -> str:
    spec = KINDS[kind]
    names = {f.name: f.label for f in spec.fields}
    return message if name not in names or message.startswith(names[name]) else f"{names[name]}: {message}"


@login_required
@require_GET
def test_status(request, test_id):
    try:
        test = services.connection_test_get_for_user(request.user, test_id)
    except NotFound as error:
        raise Http404(str(error)) from None
    in_row = request.GET.get("in") == "row"
    if in_row and request.htmx and test.finished_state and test.component_id:
        return _row_response(request, test)
    return _test_response(request, _test_context(test, in_row=in_row), finished=test.finished_state)


@login_required
@require_POST
@manager_required("test BYOI connections")
def component_retest(request, chatbot_id, kind):
    """Re-test: run Test Connection again on a saved component's stored settings."""
    chatbot = _chatbot_or_404(request, chatbot_id)
    component = chatbot.components.filter(kind=_kind(kind)).first()
    if component is None:
        raise Http404("No such component")
    try:
        test = services.connection_test_retest(component, actor=request.user)
    except services.ComponentInvalid as error:
        return _refused(request, kind, [_labelled(kind, n, m) for n, m in error.errors.items()])
    except (services.RateLimited, PlanLimitReached) as error:
        return _refused(request, kind, [str(error)])
    if not request.htmx:
        return redirect("byoi:test_status", test_id=test.id)
    return _test_response(request, _test_context(test, in_row=True), finished=test.finished_state)


@login_required
@require_http_methods(["GET", "POST"])
@manager_required("change BYOI settings", methods=("POST",))
def byoi_settings(request, chatbot_id):
    """BYOI settings of an existing chatbot: enable, change or disable components later. Members see them
    read-only: each component's status and location, never a field or a secret."""
    chatbot = _chatbot_or_404(request, chatbot_id)
    if not can_manage(request.user.membership):
        return _settings_read_only(request, chatbot)
    account = account_for_user(request.user)
    data, kept = draft_fill(request.POST if request.method == "POST" else None, account=account, user=request.user)
    refresh = data is not None and "byoi-refresh" in data
    panel = ByoiPanel(data, account=account, chatbot=chatbot, bind=not refresh)
    confirm = None
    if data is not None and not refresh and panel.is_valid():
        disabling = panel.disabling
        change = panel.data_change()
        if change is not None and change.dims_change and data.get("byoi-confirm-dimensions") != change.token:
            confirm = change  # a dimension change is confirmed before anything is saved
        hold = change.hold if change is not None and change.moving else set()
        try:
            if confirm is not None:
                raise _NotYet
            saved = panel.save(chatbot, actor=request.user, hold=hold)
        except PlanLimitReached as error:
            panel.errors.append(str(error))
        except (services.ComponentInvalid, _NotYet):
            pass  # the errors are on the fields, or the confirmation is asked below
        else:
            draft_discard(data, account=account, user=request.user)
            messages.success(request, "BYOI settings saved.")
            for warning in save_warnings(saved, disabling, hold):
                messages.warning(request, warning)
            if hold:
                move = moves.data_move_offer(chatbot, switch_on=change.switch_on, switch_off=change.switch_off,
                                             byoi_off=change.byoi_off, reembed=change.reembed, actor=request.user)
                return redirect("byoi:data_move", move_id=move.id)
            return redirect("chatbots:detail", chatbot_id=chatbot.id)
    log_page = _page_number(request.GET.get("log"))
    activity, older = activity_page(chatbot, log_page)
    context = {"chatbot": chatbot, "panel": panel, "activity": activity, "log_page": log_page, "log_older": older,
               "quiet_minutes": FAILURE_QUIET_MINUTES, "draft_id": "", "summary": [], "confirm": confirm,
               "open_move": moves.data_move_open(chatbot)}
    if data is not None and refresh:
        draft_mark(panel, kept)
        context["draft_id"] = data.get(DRAFT_FIELD, "") if kept else ""
    elif data is not None and confirm is not None:
        context["draft_id"] = draft_keep(panel, data, account=account, user=request.user)
        tests_attach(panel, account=account)
    elif data is not None:
        # Nothing was saved: keep the typed secrets and the Test Connection results, say what to fix.
        context["draft_id"] = draft_keep(panel, data, account=account, user=request.user)
        tests_attach(panel, account=account)
        context["summary"] = error_summary([(s.spec.label, s.form) for s in panel.active_sections], panel.errors,
                                           "#byoi-panel")
    return render(request, "byoi/settings.html", context)


def _settings_read_only(request, chatbot):
    log_page = _page_number(request.GET.get("log"))
    activity, older = activity_page(chatbot, log_page)
    return render(request, "byoi/settings_read_only.html", {
        "chatbot": chatbot, **status_context(request, chatbot), "activity": activity, "log_page": log_page,
        "log_older": older, "quiet_minutes": FAILURE_QUIET_MINUTES, "open_move": moves.data_move_open(chatbot)})


class _NotYet(Exception):
    """The save waits for the customer to confirm a dimension change."""


# --- data moves: the data follows a switch ------------------------------------------------------------------


def _move_or_404(request, move_id):
    try:
        return moves.data_move_get_for_user(request.user, move_id)
    except NotFound as error:
        raise Http404(str(error)) from None


def _move_response(request, move):
    context = {"move": move, "chatbot": move.chatbot, "rows": data_move_rows(move)}
    if not request.htmx:
        return render(request, "byoi/data_move.html", context)
    html = render_to_string("byoi/partials/_data_move.html", context, request)
    return HttpResponseStopPolling(html) if move.finished_state else HttpResponse(html)


@login_required
@require_GET
def data_move(request, move_id):
    """The offer to copy the data after a switch was saved, then the copy's progress (polled)."""
    return _move_response(request, _move_or_404(request, move_id))


@login_required
@require_POST
@manager_required("move a chatbot's data between stores")
def data_move_action(request, move_id, action):
    """Copy (or Retry: it resumes), keep the current stores, or switch without copying."""
    move = _move_or_404(request, move_id)
    if action == "start":
        move = moves.data_move_start(move, actor=request.user)
    elif action == "cancel":
        move = moves.data_move_cancel(move, actor=request.user)
    elif action == "switch":
        move = moves.data_move_switch_now(move, actor=request.user)
    else:
        raise Http404("No such action")
    if not request.htmx:
        return redirect("byoi:data_move", move_id=move.id)
    return _move_response(request, move)

"""The platform's pages: sign-up and log-in, the account side of the dashboard (account, team, plan with limits,
usage and asking for an upgrade, the API keys overview, the docs page) and the branded error pages. Views
translate HTTP; plan changes live in wizchat.plans. (An entry point: it may read other apps' sections.)"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, HttpResponseServerError
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import team
from .accounts import NoTeam, account_for_user, account_signup
from .forms import InviteSignupForm, LoginForm, SignupForm
from .models import Plan, Role, UpgradeRequest
from .plans import UpgradeRefused, upgrade_request_create
from .roles import RoleRequired, manager_required, membership_for_user
from .security import login_account_wait


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("chatbots:list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = account_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            team_name=form.cleaned_data["team_name"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chatbots:list")
    return render(request, "registration/signup.html", {"form": form})


@require_GET
def home(request):
    return redirect("chatbots:list" if request.user.is_authenticated else "login")


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout response (settings.AXES_LOCKOUT_CALLABLE): the log-in page again, saying for how long
    this account cannot be tried from this address. The password is never echoed, nor read here."""
    from axes.helpers import get_client_username

    username = get_client_username(request, credentials) or ""
    wait = max(1, login_account_wait(request, username))
    refusal = (f"Too many failed log-ins for this account from your network. For your security, it is paused "
               f"here: try again in {wait} minute{'s' if wait != 1 else ''}. Other devices and networks are "
               "not affected.")
    form = LoginForm(request, initial={"username": username[:150]}, refusal=refusal)
    return render(request, "registration/login.html", {"form": form, "next": request.POST.get("next", "")},
                  status=429)


def _meter(used: int, limit: int) -> dict:
    percent = min(100, round(100 * used / limit)) if limit else 100
    return {"used": used, "limit": limit, "percent": percent, "full": used >= limit,
            "near": not used >= limit and percent >= 80}


def account_usage(account) -> dict:
    """The plan's limits against what the team uses: chatbots, documents and API keys per chatbot (the fullest
    chatbot counts), messages this month."""
    from conversations.services import messages_this_month

    plan = account.plan
    bots = list(account.chatbots.annotate(
        document_count=Count("documents", distinct=True),
        key_count=Count("api_keys", filter=Q(api_keys__revoked__isnull=True), distinct=True)).order_by("name"))
    fullest_docs = max(bots, key=lambda b: b.document_count, default=None)
    fullest_keys = max(bots, key=lambda b: b.key_count, default=None)
    return {
        "chatbots": _meter(len(bots), plan.max_chatbots),
        "documents": {**_meter(fullest_docs.document_count if fullest_docs else 0, plan.max_documents),
                      "total": sum(b.document_count for b in bots), "bot": fullest_docs},
        "messages": _meter(messages_this_month(account), plan.max_messages_per_month),
        "api_keys": {**_meter(fullest_keys.key_count if fullest_keys else 0, plan.max_api_keys),
                     "total": sum(b.key_count for b in bots), "bot": fullest_keys},
        "bots": bots,
    }


@login_required
@require_GET
def account_page(request):
    account = account_for_user(request.user)
    return render(request, "account/account.html", {"account": account, "membership": request.user.membership,
                                                    "members": account.memberships.count()})


def _team_page(request, **extra):
    me = membership_for_user(request.user)
    account = me.account
    roles = [(value, name) for value, name in Role.choices if me.role == Role.OWNER or value != Role.OWNER]
    context = {"account": account, "me": me, "members": team.members_list(account), "roles": roles,
               "invites": team.invites_pending(account) if me.can_manage else [],
               "invite_days": team.INVITE_DAYS, **extra}
    if me.can_manage:  # the audit trail is for owners and admins
        page = request.GET.get("activity", "1")
        page = int(page) if page.isdigit() and len(page) < 7 else 1
        context["events"], context["events_more"] = team.events_page(account, page)
        context["events_page"] = max(1, page)
    return render(request, "account/team.html", context)


@login_required
@require_GET
def team_page(request):
    return _team_page(request)


@login_required
@require_POST
@manager_required("invite people to the team")
def team_invite(request):
    """A new invite link, shown in this response only (never stored, redirected or logged)."""
    me = membership_for_user(request.user)
    try:
        invite, token = team.invite_create(me, request.POST.get("role", Role.MEMBER))
    except team.TeamRefused as refused:
        return _team_page(request, invite_error=str(refused))
    link = request.build_absolute_uri(f"/invite/{token}/")
    return _team_page(request, new_invite=invite, new_invite_link=link)


def _team_object(lookup, account, object_id):
    try:
        return lookup(account, object_id)
    except team.TeamNotFound as error:
        raise Http404(str(error)) from None


@login_required
@require_POST
@manager_required("revoke invites")
def team_invite_revoke(request, invite_id):
    me = membership_for_user(request.user)
    invite = _team_object(team.invite_get, me.account, invite_id)
    team.invite_revoke(me, invite)
    messages.success(request, f"The invite link ({invite.get_role_display().lower()}) is revoked: it no longer works.")
    return redirect("team")


@login_required
@require_POST
@manager_required("change roles in the team")
def team_member_role(request, member_id):
    me = membership_for_user(request.user)
    member = _team_object(team.member_get, me.account, member_id)
    try:
        team.member_set_role(me, member, request.POST.get("role", ""))
    except team.TeamRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"{member.user.email or member.user.username} is now "
                                  f"{'an' if member.role in (Role.OWNER, Role.ADMIN) else 'a'} "
                                  f"{member.get_role_display().lower()}.")
    return redirect("team")


@login_required
@require_http_methods(["GET", "POST"])
@manager_required("remove people from the team")
def team_member_remove(request, member_id):
    me = membership_for_user(request.user)
    member = _team_object(team.member_get, me.account, member_id)
    if request.method == "GET":
        return render(request, "account/team_remove.html", {"account": me.account, "member": member, "me": me})
    email, leaving = member.user.email or member.user.username, member.pk == me.pk
    try:
        team.member_remove(me, member)
    except team.TeamRefused as refused:
        messages.error(request, str(refused))
        return redirect("team")
    if leaving:
        messages.success(request, f"You left {me.account.name}.")
        return redirect("chatbots:list")
    messages.success(request, f"{email} is no longer in {me.account.name}.")
    return redirect("team")


@login_required
@require_POST
def team_start(request):
    """A user without a team (removed from theirs) starts their own, on the Free plan."""
    try:
        team.team_start(request.user, request.POST.get("team_name", ""))
    except team.TeamRefused as refused:
        messages.error(request, str(refused))
    return redirect("chatbots:list")


@require_http_methods(["GET", "POST"])
def invite_accept(request, token):
    """An invite link: a visitor signs up into the team, a logged-in user without a team joins it, anyone else
    is told why not. Every refusal is a page that says what to do, never a 500."""
    try:
        invite = team.invite_find(token)
    except team.InviteInvalid as invalid:
        return render(request, "account/invite.html", {"invalid": str(invalid)}, status=410 if invalid.gone else 404)
    context = {"invite": invite, "team_name": invite.account.name, "token": token}
    user = request.user
    if user.is_authenticated:
        if hasattr(user, "membership"):
            return render(request, "account/invite.html", {**context,
                                                           "refused": team.already_in_team(user, invite.account)})
        if request.method == "POST":
            try:
                team.invite_accept(token, user)
            except (team.TeamRefused, team.InviteInvalid) as refused:
                return render(request, "account/invite.html", {**context, "refused": str(refused)}, status=409)
            messages.success(request, f"Welcome to {invite.account.name}.")
            return redirect("chatbots:list")
        return render(request, "account/invite.html", context)
    form = InviteSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = team.invite_signup(token, email=form.cleaned_data["email"], password=form.cleaned_data["password"])
        except team.InviteInvalid as invalid:
            return render(request, "account/invite.html", {"invalid": str(invalid)}, status=410)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to {invite.account.name}.")
        return redirect("chatbots:list")
    return render(request, "account/invite.html", {**context, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
@manager_required("ask for another plan", methods=("POST",))
def plan_page(request):
    account = account_for_user(request.user)
    error = ""
    if request.method == "POST":
        try:
            upgrade_request_create(account, request.user, request.POST.get("plan", ""), request.POST.get("message", ""))
        except UpgradeRefused as refused:
            error = str(refused)
        else:
            messages.success(request, "Thanks — your request is with our team. We will get back to you by email; "
                                      "your plan changes as soon as it is approved.")
            return redirect("plan")
    plans = list(Plan.objects.all())
    open_request = account.upgrade_requests.filter(status=UpgradeRequest.Status.OPEN).select_related("plan").first()
    upgrades = [p for p in plans if p.position > account.plan.position]
    return render(request, "account/plan.html", {
        "account": account, "plan": account.plan, "plans": plans, "usage": account_usage(account),
        "open_request": open_request, "choices": [p for p in plans if p.pk != account.plan_id],
        "suggested": (open_request.plan.slug if open_request else (upgrades[0].slug if upgrades else "")),
        "error": error, "typed_message": request.POST.get("message", "") if error else "",
    })


@login_required
@require_GET
def api_keys_page(request):
    """Every chatbot with its keys in use; keys are created and revoked on the chatbot's page (its API keys card)."""
    account = account_for_user(request.user)
    bots = account.chatbots.annotate(
        key_count=Count("api_keys", filter=Q(api_keys__revoked__isnull=True), distinct=True)).order_by("name")
    return render(request, "account/api_keys.html", {"account": account, "bots": bots,
                                                     "limit": account.plan.max_api_keys})


@require_GET
def docs_page(request):
    from byoi.sections import byoi_plans_text

    base = f"{request.scheme}://{request.get_host()}"
    return render(request, "docs.html", {"api_base": base + "/v1", "byoi_plans": byoi_plans_text(),
                                         "plans": Plan.objects.all()})


def page_not_found(request, exception=None):
    if isinstance(exception, NoTeam) and request.user.is_authenticated:
        return render(request, "account/no_team.html", status=404)
    return render(request, "404.html", status=404)


def permission_denied(request, exception=None):
    """403: a member tried what only owners and admins may do (the page names them), or another refusal. An
    htmx request reloads its page instead (htmx swaps no 403): the message is waiting there, and the controls a
    stale page still showed are gone."""
    message = str(exception) if isinstance(exception, RoleRequired) else ""
    if getattr(request, "htmx", False) and message:
        messages.error(request, message)
        response = HttpResponse(message, status=403, content_type="text/plain; charset=utf-8")
        response["HX-Refresh"] = "true"
        return response
    return render(request, "403.html", {"message": message,
                                         "managers": getattr(exception, "managers", [])}, status=403)


def server_error(request):
    """The 500 page renders without the request's context: whatever broke (the database, say) must not break it."""
    return HttpResponseServerError(loader.get_template("500.html").render())

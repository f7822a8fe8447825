"""The platform's pages: sign-up and log-in, the account side of the dashboard (account, team, plan with limits,
usage and asking for an upgrade, the API keys overview, the docs page) and the branded error pages. Views
translate HTTP; plan changes live in wizchat.plans. (An entry point: it may read other apps' sections.)"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpResponseServerError
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.http import require_GET, require_http_methods

from .accounts import account_for_user, account_signup
from .forms import LoginForm, SignupForm
from .models import Plan, UpgradeRequest
from .plans import UpgradeRefused, upgrade_request_create
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


@login_required
@require_GET
def team_page(request):
    account = account_for_user(request.user)
    members = account.memberships.select_related("user").order_by("-is_owner", "created")
    return render(request, "account/team.html", {"account": account, "members": members})


@login_required
@require_http_methods(["GET", "POST"])
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
    return render(request, "404.html", status=404)


def server_error(request):
    """The 500 page renders without the request's context: whatever broke (the database, say) must not break it."""
    return HttpResponseServerError(loader.get_template("500.html").render())

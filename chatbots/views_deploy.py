"""The chatbot page's Deploy, API keys and Widget cards (services: chatbots.deployments, chatbots.apikeys,
chatbots.widget). Every view answers with the chatbot page (or the card alone for htmx)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from byoi.errors import NotFound
from wizchat.plans import PlanLimitReached
from wizchat.roles import manager_required

from . import apikeys, deployments
from .views import chatbot_or_404, detail_context
from .widget import OriginRejected, origins_clean


def _page(request, chatbot, card: str, **extra):
    context = detail_context(request, chatbot, **extra)
    if request.htmx:
        return render(request, f"chatbots/partials/_{card}.html", context)
    return render(request, "chatbots/detail.html", context)


@login_required
@require_POST
@manager_required("deploy chatbots")
def deploy(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    target = request.POST.get("target", "local")
    try:
        deployments.deployment_create(chatbot, target, actor=request.user)
    except deployments.DeployRefused as refused:
        return _page(request, chatbot, "deployment", deploy_error=str(refused))
    if not request.htmx:
        messages.success(request, "Deploying: the new runtime takes over as soon as it is ready.")
        return redirect("chatbots:detail", chatbot_id=chatbot.id)
    return _page(request, chatbot, "deployment")


@login_required
@require_POST
@manager_required("stop deployments")
def deploy_stop(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    deployments.deployment_stop(chatbot, actor=request.user)
    if not request.htmx:
        messages.success(request, "Deployment stopped.")
        return redirect("chatbots:detail", chatbot_id=chatbot.id)
    return _page(request, chatbot, "deployment")


@login_required
@require_GET
def deploy_status(request, chatbot_id):
    """The Deploy card alone, polled while a deployment starts."""
    chatbot = chatbot_or_404(request, chatbot_id)
    deployment = getattr(chatbot, "deployment", None)
    if deployment is not None and deployment.status == deployment.Status.STARTING:
        deployments.deployment_refresh(deployment)
    return _page(request, chatbot, "deployment")


@login_required
@require_POST
@manager_required("create API keys")
def api_key_create(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    try:
        row, key = apikeys.apikey_create(chatbot, request.POST.get("name", ""), user=request.user)
    except (apikeys.KeyRejected, PlanLimitReached) as error:
        return _page(request, chatbot, "api_keys", key_error=str(error))
    # Shown in this response only: never stored, never redirected through a URL or a cookie.
    return _page(request, chatbot, "api_keys", new_key=key, new_key_name=row.name)


@login_required
@require_POST
@manager_required("revoke API keys")
def api_key_revoke(request, chatbot_id, key_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    try:
        row = apikeys.apikey_revoke(chatbot, key_id, user=request.user)
    except NotFound as error:
        raise Http404(str(error)) from None
    if not request.htmx:
        messages.success(request, f"API key “{row.name}” revoked.")
        return redirect("chatbots:detail", chatbot_id=chatbot.id)
    return _page(request, chatbot, "api_keys", key_notice=f"“{row.name}” is revoked.")


@login_required
@require_POST
@manager_required("change the widget's allowed websites")
def allowed_origins(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    text = request.POST.get("allowed_origins", "")
    try:
        chatbot.allowed_origins = origins_clean(text)
    except OriginRejected as error:
        return _page(request, chatbot, "widget", origins_error=str(error), allowed_origins_typed=text)
    chatbot.save(update_fields=["allowed_origins", "updated"])
    if not request.htmx:
        messages.success(request, "Allowed websites saved.")
        return redirect("chatbots:detail", chatbot_id=chatbot.id)
    return _page(request, chatbot, "widget", origins_notice="Saved.")

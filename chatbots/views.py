from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET, require_http_methods

from byoi.drafts import DRAFT_FIELD, draft_discard, draft_fill, draft_keep, draft_mark, tests_attach
from byoi.errors import NotFound
from byoi.forms import ByoiPanel, save_warnings
from byoi.services import ComponentInvalid
from wizchat.accounts import account_for_user
from wizchat.formerrors import error_summary
from wizchat.plans import PlanLimitReached
from wizchat.roles import manager_required

from . import ingestion, services
from .forms import ChatbotForm

# Each section of the chatbot page adds its context here: (request, chatbot) -> dict.
# Its template is included by chatbots/detail.html.
DETAIL_SECTIONS = [
    "byoi.sections.status_context",  # BYOI components: checkmarks, last check, Re-test
    "chatbots.sections.knowledge_context",  # documents, ingestion progress, chat, history, data locations
    "chatbots.sections.deployment_context",  # deployment, API keys, widget (chatbots/views_deploy.py)
]


def detail_context(request, chatbot, **extra) -> dict:
    """The chatbot page's context: every section's, then `extra` (what a form post adds to its card)."""
    context = {"chatbot": chatbot}
    for provider in DETAIL_SECTIONS:
        context.update(import_string(provider)(request, chatbot))
    context.update(extra)
    return context


def chatbot_or_404(request, chatbot_id):
    """The user's chatbot; 404 for any other (the chatbots views' one lookup)."""
    try:
        return services.chatbot_get_for_user(request.user, chatbot_id)
    except NotFound as error:
        raise Http404(str(error)) from None


def document_or_404(request, chatbot_id, document_id):
    try:
        return ingestion.document_get_for_user(request.user, chatbot_id, document_id)
    except NotFound as error:
        raise Http404(str(error)) from None


@login_required
@require_GET
def chatbot_list(request):
    account = account_for_user(request.user)
    chatbots = account.chatbots.all()
    return render(request, "chatbots/list.html", {"chatbots": chatbots, "account": account})


@login_required
@require_http_methods(["GET", "POST"])
@manager_required("create chatbots")
def chatbot_new(request):
    """Create New Chatbot, with the BYOI panel. Nothing is created unless the chatbot and every enabled
    component are valid; then the chatbot and its components are saved in one transaction."""
    account = account_for_user(request.user)
    # Secrets kept from a previous failed submit fill the fields left blank (byoi.drafts).
    data, kept = draft_fill(request.POST if request.method == "POST" else None, account=account, user=request.user)
    # Without JavaScript, "Show the BYOI fields" re-renders the page from the posted switches, creating nothing.
    refresh = data is not None and "byoi-refresh" in data
    form = ChatbotForm(None if refresh else data, initial=data.dict() if refresh else None)
    panel = ByoiPanel(data, account=account, bind=not refresh)
    if data is not None and not refresh and all([form.is_valid(), panel.is_valid()]):
        try:
            with transaction.atomic():
                chatbot = services.chatbot_create(account, **form.cleaned_data)
                saved = panel.save(chatbot, actor=request.user)
        except PlanLimitReached as error:
            form.add_error(None, str(error))
        except ComponentInvalid:
            pass  # the errors are on the component's fields
        else:
            draft_discard(data, account=account, user=request.user)
            messages.success(request, f"Chatbot “{chatbot.name}” created.")
            for warning in save_warnings(saved, []):
                messages.warning(request, warning)
            return redirect("chatbots:detail", chatbot_id=chatbot.id)
    context = {"form": form, "account": account, "panel": panel, "byoi_panel_template": "byoi/partials/_panel.html",
               "draft_id": "", "summary": []}
    if data is not None and refresh:
        draft_mark(panel, kept)
        context["draft_id"] = data.get(DRAFT_FIELD, "") if kept else ""
    elif data is not None:
        # Nothing was created: keep the typed secrets and the Test Connection results, say what to fix.
        context["draft_id"] = draft_keep(panel, data, account=account, user=request.user)
        tests_attach(panel, account=account)
        context["summary"] = error_summary([("", form)] + [(s.spec.label, s.form) for s in panel.active_sections],
                                           panel.errors, "#byoi-panel")
    return render(request, "chatbots/create.html", context)


@login_required
@require_GET
def chatbot_detail(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    return render(request, "chatbots/detail.html", detail_context(request, chatbot))


@login_required
@require_http_methods(["GET", "POST"])
@manager_required("edit a chatbot's name and instructions")
def chatbot_edit(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    form = ChatbotForm(request.POST or None, instance=chatbot)
    if request.method == "POST" and form.is_valid():
        services.chatbot_update(chatbot, **form.cleaned_data)
        messages.success(request, "Chatbot saved.")
        return redirect("chatbots:detail", chatbot_id=chatbot.id)
    return render(request, "chatbots/edit.html", {"form": form, "chatbot": chatbot})


@login_required
@require_http_methods(["GET", "POST"])
@manager_required("delete chatbots")
def chatbot_remove(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    if request.method == "POST":
        name = chatbot.name
        services.chatbot_delete(chatbot)
        messages.success(request, f"Chatbot “{name}” deleted.")
        return redirect("chatbots:list")
    return render(request, "chatbots/delete.html", {"chatbot": chatbot})

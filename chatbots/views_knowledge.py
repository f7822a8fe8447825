from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from byoi.access import ComponentFailed
from wizchat.plans import PlanLimitReached
from wizchat.roles import manager_required

from . import ingestion, sections
from .forms_knowledge import KnowledgeSettingsForm
from .views import chatbot_or_404, document_or_404

OUTCOMES = {
    "added": "“{}” added: its row below shows the ingestion's progress.",
    "updated": "“{}” updated: its row below shows it being ingested again.",
    "unchanged": "“{}” is already up to date: nothing to do.",
}


def _documents_response(request, chatbot, error: str = "", notice: str = "", form: dict | None = None,
                        settings_form=None):
    if request.htmx:
        context = {"chatbot": chatbot, **sections.knowledge_context(request, chatbot),
                   "documents_error": error, "documents_notice": notice, "documents_form": form or {}}
        if settings_form is not None:
            context["knowledge_settings_form"] = settings_form
        return render(request, "chatbots/partials/_documents.html", context)
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    return redirect("chatbots:detail", chatbot_id=chatbot.id)


@login_required
@require_POST
def document_create(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    upload = request.FILES.get("file")
    title = request.POST.get("title", "")
    try:
        if upload is not None:
            if upload.size > ingestion.MAX_UPLOAD_BYTES:
                raise ingestion.DocumentRejected(
                    f"“{upload.name}” is {upload.size / 1048576:.1f} MB; the limit is "
                    f"{ingestion.MAX_UPLOAD_BYTES // 1048576} MB. Split it into smaller documents.")
            document, outcome = ingestion.document_add(chatbot, title=title, filename=upload.name,
                                                       data=upload.read())
        elif request.POST.get("text", "").strip() or request.POST.get("mode") == "paste":
            document, outcome = ingestion.document_add(chatbot, title=title, text=request.POST.get("text", ""))
        else:
            raise ingestion.DocumentRejected("Choose a file to upload, or paste some text.")
    except (ingestion.DocumentRejected, PlanLimitReached) as error:
        form = {"title": title, "text": request.POST.get("text", "")}
        return _documents_response(request, chatbot, error=str(error), form=form)
    return _documents_response(request, chatbot, notice=OUTCOMES[outcome].format(document.title))


@login_required
@require_POST
@manager_required("change knowledge settings")
def knowledge_settings(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    form = KnowledgeSettingsForm(request.POST, instance=chatbot)
    if not form.is_valid():
        errors = " ".join(e for field_errors in form.errors.values() for e in field_errors)
        return _documents_response(request, chatbot, error=errors, settings_form=form)
    form.save()
    return _documents_response(request, chatbot, notice="Knowledge settings saved: they apply to documents added "
                                                        "or updated from now on.")


@login_required
@require_GET
def document_row(request, chatbot_id, document_id):
    """A document's row; while its job runs the row polls this view, and stops once the job has finished."""
    document = document_or_404(request, chatbot_id, document_id)
    if not request.htmx:
        return redirect("chatbots:detail", chatbot_id=document.chatbot_id)
    response = render(request, "chatbots/partials/_document_row.html", {"chatbot": document.chatbot, "doc": document})
    if document.finished_state:
        response["HX-Trigger"] = "wizchat:refresh"  # the data-locations counts changed
    return response


@login_required
@require_POST
@manager_required("delete documents")
def document_remove(request, chatbot_id, document_id):
    document = document_or_404(request, chatbot_id, document_id)
    chatbot, title = document.chatbot, document.title
    try:
        ingestion.document_delete(document)
    except ComponentFailed as failure:
        return _documents_response(request, chatbot, error=f"“{title}” was not deleted. {failure} {failure.hint}")
    return _documents_response(request, chatbot, notice=f"“{title}” deleted with its chunks and graph nodes.")


@login_required
@require_POST
def document_retry(request, chatbot_id, document_id):
    document = document_or_404(request, chatbot_id, document_id)
    try:
        ingestion.document_retry(document)
    except ingestion.DocumentRejected as error:
        return _documents_response(request, document.chatbot, error=str(error))
    return _documents_response(request, document.chatbot, notice=f"“{document.title}”: ingestion resumed.")


@login_required
@require_GET
def data_locations(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    context = {"chatbot": chatbot, "locations": sections.data_locations(chatbot), "loaded": True}
    if request.htmx:
        return render(request, "chatbots/partials/_data_locations.html", context)
    return render(request, "chatbots/section.html", {**context, "section": "chatbots/partials/_data_locations.html",
                                                     "section_title": "Data locations"})

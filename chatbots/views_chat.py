import json
from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from byoi.access import ComponentFailed
from conversations import services as conversations

from . import chat
from .views import chatbot_or_404, detail_context


def _sse(events):
    for event in events:
        kind = event.pop("event")
        yield f"event: {kind}\ndata: {json.dumps(event)}\n\n"


@login_required
@require_POST
def chat_ask(request, chatbot_id):
    """With `Accept: text/event-stream` (the page's script) the answer streams token by token as server-sent
    events; a plain form POST (no JavaScript) gets the page back with the full answer and its sources."""
    chatbot = chatbot_or_404(request, chatbot_id)
    question = request.POST.get("question", "")
    conversation_id = request.POST.get("conversation_id") or None
    if "text/event-stream" in request.headers.get("Accept", ""):
        response = StreamingHttpResponse(_sse(chat.chat_events(chatbot, question, conversation_id)),
                                         content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    result = chat.chat_answer(chatbot, question, conversation_id)
    chat_context = {"chat_question": question, "chat_result": result,
                    "conversation_id": result["conversation_id"]}
    if request.htmx:
        return render(request, "chatbots/partials/_chat.html", {"chatbot": chatbot, **chat_context})
    return render(request, "chatbots/detail.html", detail_context(request, chatbot, **chat_context))


def _parse_time(value):
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


@login_required
@require_GET
def chat_history(request, chatbot_id):
    chatbot = chatbot_or_404(request, chatbot_id)
    context = {"chatbot": chatbot, "loaded": True}
    try:
        context["conversations"] = [{**c, "started_at": _parse_time(c.get("started"))}
                                    for c in conversations.conversation_list(chatbot)]
    except ComponentFailed as failure:
        context["history_error"] = failure
    conversation_id = request.GET.get("conversation")
    if conversation_id:
        try:
            context["conversation_messages"] = conversations.conversation_history(chatbot, conversation_id)
            context["conversation_id"] = conversation_id
        except ComponentFailed as failure:
            context["history_error"] = failure
    if request.htmx:
        return render(request, "chatbots/partials/_history.html", context)
    return render(request, "chatbots/section.html", {**context, "section": "chatbots/partials/_history.html",
                                                     "section_title": "Conversation history"})

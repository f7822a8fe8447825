"""HTTP edge of the public API and the widget (chatbots.publicapi, chatbots.widget): the same views serve the
platform and a deployed runtime; the gateway in settings says who may call and which chatbots they reach."""

from __future__ import annotations

import logging
import time
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from . import publicapi, widget
from .publicapi import ApiError

log = logging.getLogger("wizchat.api")


def _error(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    if error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


def _caller(request):
    # The address is counted before the key is checked: wrong keys count too, so guessing keys is throttled.
    publicapi.rate_limit("client address", publicapi.client_address(request),
                         settings.API_RATE_LIMIT_PER_MINUTE * 2)
    token = publicapi.bearer(request)
    caller = publicapi.gateway().authenticate(token, request) if token else None
    if caller is None:
        raise publicapi.unauthorized()
    publicapi.rate_limit(caller.kind, caller.ident, caller.per_minute)
    return caller


def _api_methods(*methods):
    """Like require_http_methods, but a wrong method gets OpenAI's error shape (clients parse it)."""
    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                response = _error(ApiError(405, f"{request.method[:10]} is not allowed here; use "
                                                f"{' or '.join(methods)}."))
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)
        return wrapped
    return decorator


def _body(request) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:  # above DATA_UPLOAD_MAX_MEMORY_SIZE: Django refuses to read it
        raise ApiError(413, f"The request body is larger than {publicapi.MAX_BODY_BYTES // 1024} KB.") from None


@csrf_exempt
@_api_methods("POST")
def chat_completions(request):
    try:
        caller = _caller(request)
        ask = publicapi.completion_request(_body(request), request.headers.get("X-WizChat-Conversation"))
        target = caller.target(ask.model)
    except ApiError as error:
        return _error(error)
    from .chat import chat_events

    events = chat_events(target.chatbot, ask.question, ask.conversation_id, host=target.host,
                         history=ask.history, store=ask.conversation_id is not None, max_tokens=ask.max_tokens,
                         temperature=ask.temperature)
    cid, created = publicapi.completion_id(), int(time.time())
    # Read up to the first token: a component failing before the answer starts gets its HTTP status.
    early: list[dict] = []
    for event in events:
        early.append(event)
        if event["event"] == "error":
            for _ in events:  # let the exchange finish (nothing is stored for a failed start)
                pass
            return _error(publicapi.component_error(event))
        if event["event"] in ("token", "done"):
            break
    if ask.stream:
        def chained():
            yield from early
            yield from events

        response = StreamingHttpResponse(publicapi.stream_events(ask, cid, created, chained()),
                                         content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    answer, extension, usage = [], {}, {}
    for event in [*early, *events]:
        kind = event["event"]
        if kind == "token":
            answer.append(event["text"])
        elif kind == "sources":
            extension["sources"] = event["sources"]
        elif kind == "error":
            return _error(publicapi.component_error(event))
        elif kind == "done":
            usage = dict(event.get("usage") or {})
            if ask.conversation_id:
                extension.update(conversation_id=event["conversation_id"], stored=event.get("stored"))
    extension["usage_estimated"] = bool(usage.pop("estimated", True))
    return JsonResponse(publicapi.completion_body(cid, ask.model, created, "".join(answer), usage, extension))


@csrf_exempt
@_api_methods("GET")
def models(request):
    try:
        caller = _caller(request)
    except ApiError as error:
        return _error(error)
    return JsonResponse(publicapi.models_body(caller.targets))


@csrf_exempt
@_api_methods("GET")
def model_detail(request, model):
    try:
        target = _caller(request).target(model)
    except ApiError as error:
        return _error(error)
    return JsonResponse(publicapi.models_body([target])["data"][0])


# --- the widget -----------------------------------------------------------------------------------------------


def _base_url(request) -> str:
    return f"{request.scheme}://{request.get_host()}"


@require_GET
def widget_script(request):
    response = render(request, "widget/widget.js", {"base_url": _base_url(request)},
                      content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"  # a public script, like any CDN's; it holds nothing secret
    return response


@csrf_exempt
@require_http_methods(["POST", "OPTIONS"])
def widget_session(request, chatbot_id):
    """The script in the customer's page asks for a session: only from an allowed Origin (CORS for it alone)."""
    found = publicapi.gateway().widget_chatbot(chatbot_id)
    origin = request.headers.get("Origin", "")
    if found is None or not widget.origin_allowed(origin, found[1]):
        return _error(ApiError(403, "This website is not allowed to show this chatbot. Add it to the chatbot's "
                                    "allowed websites on its page in WizChat.", type="permission_error",
                               code="origin_not_allowed"))
    chatbot, _, key = found
    allowed = widget.origin_normal(origin)
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST"
        response["Access-Control-Max-Age"] = "600"
    else:
        try:
            publicapi.rate_limit("client address", publicapi.client_address(request), 30)
        except ApiError as error:
            return _error(error)
        response = JsonResponse({"token": widget.session_token(key, chatbot.id, allowed),
                                 "expires_in": widget.SESSION_SECONDS, "model": chatbot.slug,
                                 "name": chatbot.name})
    response["Access-Control-Allow-Origin"] = allowed
    response["Vary"] = "Origin"
    return response


@require_GET
def widget_frame(request, chatbot_id):
    """The chat window inside the iframe; the browser shows it only inside an allowed website."""
    found = publicapi.gateway().widget_chatbot(chatbot_id)
    allowed = found[1] if found else []
    context = {"chatbot_name": found[0].name if found else "", "model": found[0].slug if found else "",
               "found": bool(found and allowed)}
    response = render(request, "widget/frame.html", context)
    response["Content-Security-Policy"] = (
        f"{widget.frame_ancestors(allowed)}; default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'")
    response.xframe_options_exempt = True  # frame-ancestors decides, per chatbot
    return response


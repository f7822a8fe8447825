"""HTTP edge of what deployed runtimes send the platform (chatbots.runtime_usage, chatbots.runtime_readiness). Not for customers: no session,
no CSRF token (nothing a browser holds authenticates here), the deployment's platform token instead."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import publicapi, runtime_readiness, runtime_usage

MAX_BODY = 4096


def _runtime_report(request, scope: str, per_minute: int, handle):
    """Authenticate a runtime's JSON report (401 before anything else), count it against the chatbot's rate
    limit, and answer what `handle(chatbot_id, body)` returns."""
    try:
        raw = request.body
        body = json.loads(raw) if len(raw) <= MAX_BODY else None
    except (RequestDataTooBig, ValueError):
        body = None
    try:
        chatbot_id = runtime_usage.report_authenticate(body if isinstance(body, dict) else {},
                                                       request.headers.get("X-WizChat-Platform-Token", ""))
        publicapi.rate_limit(scope, str(chatbot_id), per_minute)
        answer = handle(chatbot_id, body)
    except runtime_usage.ReportRefused as refused:
        return JsonResponse({"error": str(refused)}, status=refused.status)
    except publicapi.ApiError as limited:
        response = JsonResponse({"error": limited.message}, status=limited.status)
        response["Retry-After"] = str(limited.retry_after or 1)
        return response
    return JsonResponse(answer)


@csrf_exempt
@require_POST
def runtime_usage_report(request):
    return _runtime_report(request, "runtime", settings.RUNTIME_USAGE_RATE_LIMIT_PER_MINUTE,
                           lambda chatbot_id, body: runtime_usage.runtime_usage_apply(
                               runtime_usage.report_parse(chatbot_id, body)))


@csrf_exempt
@require_POST
def runtime_readiness_report(request):
    return _runtime_report(request, "runtime-readiness", settings.RUNTIME_READINESS_RATE_LIMIT_PER_MINUTE,
                           lambda chatbot_id, body: runtime_readiness.runtime_readiness_record(
                               runtime_readiness.readiness_parse(chatbot_id, body)))

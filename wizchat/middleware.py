"""The dashboard while WizChat's own database is unreachable (restarted, failed over): a page saying so, with
status 503 and Retry-After, instead of the generic error page; the next request after it is back works (Django
checks a kept connection before reusing it: CONN_HEALTH_CHECKS)."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template import loader

log = logging.getLogger("wizchat.database")
RETRY_AFTER = 5


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        # OperationalError: it cannot connect, or the server went away mid-query; InterfaceError: the kept
        # connection was closed under it. Anything else (a programming error, an integrity error) stays a 500.
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.warning("The platform database is unavailable (%s): answered 503", type(exception).__name__)
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
        response["Retry-After"] = str(RETRY_AFTER)
        if request.headers.get("HX-Request"):
            response["HX-Reswap"] = "none"  # a polled part keeps what it shows rather than become the error page
        return response

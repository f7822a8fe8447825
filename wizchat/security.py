"""Platform-wide protections that are not a view's business: the Content-Security-Policy of every page, and the
log-in throttle's questions (is this client address or this account-and-address locked, and for how long).

Failed log-ins are counted by django-axes in the platform database, keyed on the account *and* the client
address (settings.AXES_LOCKOUT_PARAMETERS): guessing a customer's e-mail locks only the guesser's own address
out of that account, for AXES_COOLOFF_TIME. On top of that, one address that fails on many accounts is stopped
for a while (LOGIN_ADDRESS_FAILURE_LIMIT), computed from the same rows. The client address is the one the
public API uses (TRUSTED_PROXY_COUNT hops back in X-Forwarded-For)."""

from __future__ import annotations

import math

from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone


class ContentSecurityPolicyMiddleware:
    """Adds settings.CSP_POLICY to every response that has no policy of its own (the widget's frame sets one
    that lets the customer's allowed websites frame it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.CSP_POLICY and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.CSP_POLICY
        return response


def login_client_address(request) -> str:
    from axes.helpers import get_client_ip_address

    return getattr(request, "axes_ip_address", None) or get_client_ip_address(request) or ""


def _minutes_left(last_failure) -> int:
    if last_failure is None:
        return 0
    left = (last_failure + settings.AXES_COOLOFF_TIME - timezone.now()).total_seconds()
    return max(1, math.ceil(left / 60)) if left > 0 else 0


def login_address_wait(request) -> int:
    """Minutes until this client address may try to log in again after failing on many accounts (0: now)."""
    from axes.models import AccessAttempt

    address = login_client_address(request)
    if not address or settings.LOGIN_ADDRESS_FAILURE_LIMIT <= 0:
        return 0
    recent = AccessAttempt.objects.filter(ip_address=address,
                                          attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)
    totals = recent.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    if (totals["failures"] or 0) < settings.LOGIN_ADDRESS_FAILURE_LIMIT:
        return 0
    return _minutes_left(totals["last"])


def login_account_wait(request, username: str) -> int:
    """Minutes until `username` may be tried again from this client address after too many failures."""
    from axes.models import AccessAttempt

    last = (AccessAttempt.objects.filter(username=username, ip_address=login_client_address(request))
            .aggregate(last=Max("attempt_time"))["last"])
    return _minutes_left(last)

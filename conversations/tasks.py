"""Outbox delivery: thin — load by id, call the service, retry with backoff until the database is back."""

import math
import random

from celery import shared_task
from django.conf import settings

from byoi.access import ComponentBusy, ComponentFailed

# One delivery is one write: bounded by the connect and operation timeouts, with room for a second attempt.
_SOFT_LIMIT = int(2 * (settings.BYOI_CONNECT_TIMEOUT + settings.BYOI_OPERATION_TIMEOUT)) + 30


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True,
             name="conversations.outbox_deliver", soft_time_limit=_SOFT_LIMIT, time_limit=_SOFT_LIMIT + 30)
def outbox_deliver_task(self, outbox_id: int) -> str:
    from .services import outbox_deliver

    try:
        return outbox_deliver(outbox_id)
    except ComponentBusy:
        # Another worker is delivering to this database: come back soon, without counting an attempt.
        if not self.request.is_eager:
            self.apply_async((outbox_id,), countdown=2 + random.random(), retries=self.request.retries)  # noqa: S311
        return "waiting"
    except ComponentFailed as failure:
        # Backoff 5 s, 10 s, 20 s … capped at 5 minutes, and not before the component's breaker lets a call
        # through again; the row stays in the outbox meanwhile.
        countdown = min(300, 5 * 2 ** min(self.request.retries, 6))
        if failure.retry_after:
            countdown = max(countdown, math.ceil(failure.retry_after))
        raise self.retry(countdown=countdown) from None

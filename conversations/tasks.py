"""Outbox delivery: thin — load by id, call the service, retry with backoff until the database is back."""

from celery import shared_task

from byoi.access import ComponentFailed


@shared_task(bind=True, max_retries=None, acks_late=True, name="conversations.outbox_deliver")
def outbox_deliver_task(self, outbox_id: int) -> str:
    from .services import outbox_deliver

    try:
        return outbox_deliver(outbox_id)
    except ComponentFailed:
        # Backoff 5 s, 10 s, 20 s … capped at 5 minutes; the row stays in the outbox meanwhile.
        raise self.retry(countdown=min(300, 5 * 2 ** min(self.request.retries, 6))) from None

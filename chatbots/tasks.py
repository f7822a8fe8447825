"""Celery tasks of the knowledge feature: thin — load by id, call the service, retry with backoff."""

import math
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from byoi.access import ComponentBusy, ComponentFailed


@shared_task(bind=True, max_retries=4, acks_late=True, reject_on_worker_lost=True, name="chatbots.ingest_document",
             soft_time_limit=settings.INGESTION_SOFT_TIME_LIMIT, time_limit=settings.INGESTION_SOFT_TIME_LIMIT + 60)
def ingest_document_task(self, document_id: str) -> str:
    from .ingestion import document_ingest
    from .models import Document

    try:
        document = document_ingest(document_id)
    except Document.DoesNotExist:
        return "deleted"
    except ComponentBusy:
        # Another job is using this customer's component: come back soon, without counting an attempt.
        if not self.request.is_eager:
            self.apply_async((document_id,), countdown=2 + random.random(), retries=self.request.retries)  # noqa: S311
        return "waiting"
    except (ComponentFailed, SoftTimeLimitExceeded) as failure:
        transient = isinstance(failure, SoftTimeLimitExceeded) or failure.transient
        if transient and self.request.retries < self.max_retries:
            # The failure stays on the document ("Retrying: …"); the retry resumes where this attempt stopped, and
            # not before the component's breaker lets a call through again.
            Document.objects.filter(pk=document_id, status=Document.Status.FAILED).update(
                status=Document.Status.QUEUED)
            countdown = min(60, 2 * 2 ** self.request.retries)
            if getattr(failure, "retry_after", None):
                countdown = max(countdown, math.ceil(failure.retry_after))
            raise self.retry(countdown=countdown) from None
        return "failed"
    return document.status

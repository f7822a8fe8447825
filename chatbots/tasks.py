"""Celery tasks of the knowledge feature: thin — load by id, call the service, retry with backoff."""

from celery import shared_task

from byoi.access import ComponentFailed


@shared_task(bind=True, max_retries=4, acks_late=True, name="chatbots.ingest_document")
def ingest_document_task(self, document_id: str) -> str:
    from .ingestion import document_ingest
    from .models import Document

    try:
        document = document_ingest(document_id)
    except Document.DoesNotExist:
        return "deleted"
    except ComponentFailed as failure:
        if failure.transient and self.request.retries < self.max_retries:
            # The failure stays on the document ("Retrying: …"); the retry resumes where this attempt stopped.
            Document.objects.filter(pk=document_id, status=Document.Status.FAILED).update(
                status=Document.Status.QUEUED)
            raise self.retry(countdown=min(60, 2 * 2 ** self.request.retries)) from None
        return "failed"
    return document.status

"""Celery tasks for BYOI. Thin: load by id, call the service. Arguments and results never hold secrets."""

from celery import shared_task
from celery.signals import after_setup_logger, after_setup_task_logger
from django.db import OperationalError, close_old_connections

from byoi.scrub import install_scrub_filter

# Every step has its own connect and operation timeouts; this only bounds a run that ignores them. The soft
# limit raises inside the running step, which check_run turns into a failed step like any other error.
SOFT_TIME_LIMIT = 300


@after_setup_logger.connect
@after_setup_task_logger.connect
def _scrub_worker_logs(logger=None, **kwargs):
    install_scrub_filter(logger)


@shared_task(name="byoi.connection_test", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3,
             soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 30)
def connection_test_task(test_id: str) -> dict:
    """Run Test Connection for the ConnectionTest row `test_id`; the settings are read from the row."""
    from byoi.models import ConnectionTest
    from byoi.services import connection_test_run

    close_old_connections()
    try:
        test = connection_test_run(test_id)
    except ConnectionTest.DoesNotExist:  # purged or deleted with its chatbot before a worker got to it
        return {"id": str(test_id), "state": "gone", "error_code": ""}
    return {"id": str(test.id), "state": test.state, "error_code": test.error_code}


@shared_task(name="byoi.purge_connection_tests")
def purge_connection_tests_task() -> dict:
    from byoi.services import connection_test_purge

    return connection_test_purge()


@shared_task(name="byoi.logging_scrubbed")
def logging_scrubbed_task() -> bool:
    """Health check: True when every handler of the worker's root logger scrubs secrets."""
    import logging

    from byoi.scrub import SecretScrubFilter

    handlers = logging.getLogger().handlers
    return bool(handlers) and all(any(isinstance(f, SecretScrubFilter) for f in h.filters) for h in handlers)


@shared_task(name="byoi.platform_data_purge", bind=True, max_retries=8)
def platform_data_purge_task(self, chatbot_id: str) -> list[str]:
    """Drop a deleted chatbot's tables and graph from the platform's default stores; retried while a store is
    unreachable."""
    from byoi.errors import BackendError
    from byoi.services import platform_data_purge

    try:
        return platform_data_purge(chatbot_id)
    except BackendError as error:
        if error.transient:
            raise self.retry(exc=error, countdown=min(600, 5 * 2**self.request.retries)) from None
        raise

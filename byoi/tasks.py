"""Celery tasks for BYOI. Thin: load by id, call the service. Arguments and results never hold secrets."""

from celery import shared_task
from django.db import OperationalError, close_old_connections


@shared_task(name="byoi.connection_test", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def connection_test_task(test_id: str) -> dict:
    """Run Test Connection for the ConnectionTest row `test_id`; the settings are read from the row."""
    from byoi.services import connection_test_run

    close_old_connections()
    test = connection_test_run(test_id)
    return {"id": str(test.id), "state": test.state, "error_code": test.error_code}


@shared_task(name="byoi.purge_connection_tests")
def purge_connection_tests_task() -> dict:
    from byoi.services import connection_test_purge

    return connection_test_purge()

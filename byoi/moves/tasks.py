"""The data move's Celery task (its own module so that byoi.moves and its task import only each other).
Thin: load by id, call the service. Arguments and results never hold secrets."""

from celery import shared_task
from django.db import OperationalError, close_old_connections


@shared_task(name="byoi.data_move", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def data_move_task(move_id: str) -> dict:
    """Copy a chatbot's data for the DataMove row `move_id`, verify it, then switch (byoi.moves)."""
    from byoi.models import DataMove
    from byoi.moves import data_move_run

    close_old_connections()
    try:
        move = data_move_run(move_id)
    except DataMove.DoesNotExist:  # deleted with its chatbot before a worker got to it
        return {"id": str(move_id), "state": "gone", "error_code": ""}
    return {"id": str(move.id), "state": move.state, "error_code": move.error_code}

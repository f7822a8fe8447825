import logging
import os

from celery import Celery
from django.db import transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wizchat.settings")

log = logging.getLogger("wizchat.tasks")
app = Celery("wizchat")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["byoi.moves"])  # byoi.moves.tasks: the data move's task beside its service


@app.task(name="wizchat.ping")
def ping(value: str) -> str:
    """Round trip used by health checks and tests: proves a worker is consuming the broker."""
    return f"pong:{value}"


def send_on_commit(task, *args, unsent, countdown: float | None = None) -> None:
    """Queue `task(*args)` once the transaction commits. When the broker cannot be reached (restarting, down),
    Celery gives up publishing after its retries (about a second): `unsent(message)` then records on the row that
    the work did not start — so a page shows why and offers to try again — instead of the error escaping into a
    request whose transaction is already committed, and the row waiting for a task that was never sent."""
    from kombu.exceptions import OperationalError

    def send():
        try:
            task.apply_async(args, countdown=countdown)
        except OperationalError:
            log.warning("Task %s not queued: the broker cannot be reached", task.name)
            unsent("WizChat's task queue could not be reached, so this did not start. Try again in a moment.")

    transaction.on_commit(send)

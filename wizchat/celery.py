import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wizchat.settings")

app = Celery("wizchat")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["byoi.moves"])  # byoi.moves.tasks: the data move's task beside its service


@app.task(name="wizchat.ping")
def ping(value: str) -> str:
    """Round trip used by health checks and tests: proves a worker is consuming the broker."""
    return f"pong:{value}"

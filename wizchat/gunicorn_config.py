"""What gunicorn reads besides its command line (`--config python:wizchat.gunicorn_config`, passed by
wizchat.run.web_server_command): the web workers' hooks. gunicorn takes every name here that is one of its
settings, so nothing else lives in this module."""

from wizchat.run import worker_ready as post_worker_init  # noqa: F401 - gunicorn's hook, read by name

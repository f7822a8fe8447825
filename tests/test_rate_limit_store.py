"""The public API's rate-limit counters in the Redis WizChat runs (production's default): the limiter of a fresh
web worker is built by whichever of its threads asks first, while others may be importing the Redis client.
Found by the load test of issue 16 (tests/test_load_api.py): the first ~36 requests of a fresh gunicorn answered
500, because limits read the version of a half-imported `redis` module as 0.0.0 and refused it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # whitenoise: no collected static files

# A fresh interpreter (no `redis` imported yet) where importing `redis` takes a second, as on a busy machine: one
# thread imports it while another builds the limiter.
RACE = r'''
import importlib.machinery, os, sys, threading, time
import django
django.setup()
from django.conf import settings
from chatbots import publicapi

assert "redis" not in sys.modules

class SlowLoader:
    def __init__(self, loader):
        self.loader = loader
    def create_module(self, spec):
        return self.loader.create_module(spec)
    def exec_module(self, module):
        time.sleep(1.0)  # the module is in sys.modules already, without its __version__ yet
        self.loader.exec_module(module)

class SlowRedis:
    def find_spec(self, name, path=None, target=None):
        if name != "redis":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = SlowLoader(spec.loader)
        return spec

sys.meta_path.insert(0, SlowRedis())
settings.RATE_LIMIT_STORAGE_URL = "redis://127.0.0.1:9/2"
threading.Thread(target=lambda: __import__("redis"), daemon=True).start()
time.sleep(0.3)
try:
    publicapi._limiter()
except Exception as error:
    print("FAILED", type(error).__name__, error)
else:
    print("BUILT")
'''


def test_it_builds_the_redis_limiter_while_another_thread_imports_redis(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "wizchat.settings",
           "WIZCHAT_STATE_DIR": str(tmp_path / "state"), "WIZCHAT_IGNORE_RUNTIME_ENV": "true",
           "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none"}
    out = subprocess.run([sys.executable, "-c", RACE], cwd=str(BASE), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1:] == ["BUILT"], out.stdout + out.stderr[-2000:]


def test_it_answers_when_the_counter_store_cannot_be_built(client, settings, monkeypatch, db):
    """A counter store that cannot be built is a broken counter store: the API still answers (unlimited, logged)."""
    from limits import storage
    from limits.errors import ConfigurationError

    from chatbots import publicapi

    def refuse(url, **options):
        raise ConfigurationError("no driver")

    monkeypatch.setattr(storage, "storage_from_string", refuse)
    publicapi._limiter.cache_clear()
    response = client.get("/v1/models", HTTP_AUTHORIZATION="Bearer wzc_nothing")
    assert response.status_code == 401


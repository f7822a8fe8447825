"""Django settings of a deployed chatbot runtime. Everything comes from its environment (wizchat.runtime.config
lists the variables and checks them before the server starts; here a malformed value falls back to a default
so that the check, not an import error, reports it).

No platform database: DATABASES is empty, so any ORM query fails loudly instead of reaching for one. The
components the chatbot leaves on WizChat's defaults are reached through WIZCHAT_DEFAULT_* variables."""

import ipaddress
import secrets
import tempfile
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()


def _lenient(read, name, default):
    try:
        return read(name, default=default)
    except (ValueError, environ.ImproperlyConfigured):
        return default


def _networks(name: str) -> list:
    out = []
    for item in _lenient(env.list, name, []):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue
    return out


DEBUG = False
# Signs nothing that outlives the process (no sessions, no cookies).
SECRET_KEY = secrets.token_urlsafe(48)
ALLOWED_HOSTS = ["*"]  # served behind the platform's proxy or a Kubernetes Service; the Host header is not trusted
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "wizchat",
    "byoi",
    "chatbots",
    "conversations",
]
MIDDLEWARE = ["wizchat.runtime.middleware.request_log", "whitenoise.middleware.WhiteNoiseMiddleware"]
ROOT_URLCONF = "wizchat.runtime.urls"
WSGI_APPLICATION = "wizchat.runtime.wsgi.application"
DATABASES: dict = {}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [BASE_DIR / "templates"],
              "APP_DIRS": True, "OPTIONS": {"context_processors": ["django.template.context_processors.request"]}}]
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # the widget's files straight from static/: a read-only image needs no collectstatic

# Nothing encrypted with these is stored by the runtime (the models are imported, never queried).
BYOI_ENCRYPTION_KEY = secrets.token_urlsafe(48)
BYOI_ENCRYPTION_OLD_KEYS: list = []
CRYPTOGRAPHY_KEY = BYOI_ENCRYPTION_KEY

WIZCHAT_RUNTIME = True
RUNTIME_STATE_DIR = Path(_lenient(env.str, "WIZCHAT_RUNTIME_STATE_DIR", "") or tempfile.mkdtemp(prefix="wizchat-runtime-"))

# WizChat's defaults, for the kinds the chatbot does not bring itself.
_store_url = _lenient(env.str, "WIZCHAT_DEFAULT_STORE_URL", "")
try:
    DEFAULT_STORE_DATABASE = environ.Env.db_url_config(_store_url) if _store_url else {}
except (ValueError, environ.ImproperlyConfigured):
    DEFAULT_STORE_DATABASE = {}
FALKORDB_URL = _lenient(env.str, "WIZCHAT_DEFAULT_FALKORDB_URL", "")
DEFAULT_LLM_ENDPOINT = _lenient(env.str, "WIZCHAT_DEFAULT_LLM_ENDPOINT", "")
DEFAULT_LLM_API_KEY = _lenient(env.str, "WIZCHAT_DEFAULT_LLM_API_KEY", "") or "not-needed"
DEFAULT_LLM_MODEL = _lenient(env.str, "WIZCHAT_DEFAULT_LLM_MODEL", "")
DEFAULT_EMBEDDINGS_ENDPOINT = _lenient(env.str, "WIZCHAT_DEFAULT_EMBEDDINGS_ENDPOINT", "")
DEFAULT_EMBEDDINGS_API_KEY = _lenient(env.str, "WIZCHAT_DEFAULT_EMBEDDINGS_API_KEY", "")
DEFAULT_EMBEDDINGS_MODEL = _lenient(env.str, "WIZCHAT_DEFAULT_EMBEDDINGS_MODEL", "all-MiniLM-L6-v2")
DEFAULT_EMBEDDINGS_DIMENSIONS = _lenient(env.int, "WIZCHAT_DEFAULT_EMBEDDINGS_DIMENSIONS", 384)

EGRESS_ALLOWED_NETWORKS = _networks("WIZCHAT_EGRESS_ALLOWED_NETWORKS")
BYOI_CONNECT_TIMEOUT = _lenient(env.float, "WIZCHAT_CONNECT_TIMEOUT", 5.0)
BYOI_OPERATION_TIMEOUT = _lenient(env.float, "WIZCHAT_OPERATION_TIMEOUT", 30.0)
# The circuit breaker of byoi.access.component(): as the platform's (BYOI_BREAKER_*).
BYOI_BREAKER_COOLDOWN = _lenient(env.float, "WIZCHAT_BREAKER_COOLDOWN", 5.0)
BYOI_BREAKER_MAX_COOLDOWN = _lenient(env.float, "WIZCHAT_BREAKER_MAX_COOLDOWN", 60.0)
BYOI_CA_BUNDLE = _lenient(env.str, "WIZCHAT_CA_BUNDLE", "")

# The public API and the widget (chatbots.publicapi).
PUBLIC_API_GATEWAY = "wizchat.runtime.gateway.RuntimeGateway"
API_RATE_LIMIT_PER_MINUTE = _lenient(env.int, "WIZCHAT_RATE_LIMIT", 60)
TRUSTED_PROXY_COUNT = _lenient(env.int, "WIZCHAT_TRUSTED_PROXIES", 0)
RATE_LIMIT_STORAGE_URL = "memory://"  # one process serves the runtime (threads): its counters are exact

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"scrub_secrets": {"()": "byoi.scrub.SecretScrubFilter"}},
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["scrub_secrets"], "formatter": "line"}},
    "root": {"handlers": ["console"], "level": _lenient(env.str, "LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "openai": {"level": "WARNING"}},
}

"""WizChat settings. Every setting comes from the environment (django-environ); nothing else reads os.environ."""

import ipaddress
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
STATE_DIR = Path(env.str("WIZCHAT_STATE_DIR", default=str(BASE_DIR / ".state")))
# The embedded launcher writes the addresses of the servers it started here; explicit variables win.
_runtime_env = STATE_DIR / "runtime.env"
if _runtime_env.exists() and not env.bool("WIZCHAT_IGNORE_RUNTIME_ENV", default=False):
    environ.Env.read_env(str(_runtime_env), overwrite=False)


def _secret(name: str, generate: bool = True) -> str:
    """A secret from NAME, NAME_FILE, or (development) a value generated once into the state folder."""
    value = env.str(name, default="")
    if value:
        return value
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    if not generate:
        return ""
    stored = STATE_DIR / "secrets" / name.lower()
    if not stored.exists():
        stored.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        stored.write_text(secrets.token_urlsafe(48))
        stored.chmod(0o600)
    return stored.read_text().strip()


def _secret_list(name: str) -> list[str]:
    value = _secret(name, generate=False)
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _secret("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# BYOI secrets are encrypted with their own key, never with SECRET_KEY. Old keys stay readable
# until `manage.py rotate_byoi_key` has re-encrypted every secret under the current one.
BYOI_ENCRYPTION_KEY = _secret("BYOI_ENCRYPTION_KEY")
BYOI_ENCRYPTION_OLD_KEYS = _secret_list("BYOI_ENCRYPTION_OLD_KEYS")
# Development: the key was generated into the state folder; `rotate_byoi_key --generate` writes the new one
# there and appends the old one to byoi_encryption_old_keys (one per line) until re-encryption is done.
BYOI_ENCRYPTION_KEY_IN_STATE_DIR = not (env.str("BYOI_ENCRYPTION_KEY", default="")
                                        or env.str("BYOI_ENCRYPTION_KEY_FILE", default=""))
_byoi_old_keys_file = STATE_DIR / "secrets" / "byoi_encryption_old_keys"
if BYOI_ENCRYPTION_KEY_IN_STATE_DIR and not BYOI_ENCRYPTION_OLD_KEYS and _byoi_old_keys_file.exists():
    BYOI_ENCRYPTION_OLD_KEYS = [k.strip() for k in _byoi_old_keys_file.read_text().splitlines() if k.strip()]
CRYPTOGRAPHY_KEY = BYOI_ENCRYPTION_KEY

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "wizchat",
    "byoi",
    "chatbots",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "wizchat.middleware.DatabaseUnavailableMiddleware",  # the database unreachable: a 503 page, not a 500
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "wizchat.security.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a log-in refused for too many failures into the log-in page saying so (wizchat.security)
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "wizchat.urls"
WSGI_APPLICATION = "wizchat.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "wizchat.context_processors.account",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/wizchat"),
}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 10)
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

FALKORDB_URL = env.str("FALKORDB_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/1")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A task is acknowledged when it ends, and one whose worker process died (killed, out of memory) goes back to its
# queue and runs again; tasks are idempotent (chunk ids, message ids) and resume from their recorded progress.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Separate queues, so that retries against a customer's failing database and long ingestions cannot stand in
# front of other work; a worker consumes them all (wizchat.embedded.CELERY_QUEUES, `celery worker -Q`).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "ingestion", "outbox")]  # a bare `celery worker` takes all
CELERY_TASK_ROUTES = {
    "chatbots.ingest_document": {"queue": "ingestion"},
    "conversations.outbox_deliver": {"queue": "outbox"},
}
# Every task ends: a soft limit raises inside it (it records why), the hard limit kills its process. Ingestion
# and outbox delivery set their own (chatbots.tasks, conversations.tasks).
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
INGESTION_SOFT_TIME_LIMIT = env.int("INGESTION_SOFT_TIME_LIMIT", default=1800)
# A job whose document shows no progress for this long (its worker died while Celery could not tell) is marked
# failed, with Retry.
INGESTION_STALL_SECONDS = env.int("INGESTION_STALL_SECONDS", default=600)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# Default components (what a chatbot uses where it has no BYOI component of that kind).
DEFAULT_LLM_ENDPOINT = env.str("DEFAULT_LLM_ENDPOINT", default="http://127.0.0.1:8088/v1")
DEFAULT_LLM_API_KEY = _secret("DEFAULT_LLM_API_KEY", generate=False) or "not-needed"
DEFAULT_LLM_MODEL = env.str("DEFAULT_LLM_MODEL", default="smollm2-135m-instruct")
DEFAULT_EMBEDDINGS_ENDPOINT = env.str("DEFAULT_EMBEDDINGS_ENDPOINT", default="")  # empty: in-process MiniLM
DEFAULT_EMBEDDINGS_API_KEY = _secret("DEFAULT_EMBEDDINGS_API_KEY", generate=False)
DEFAULT_EMBEDDINGS_MODEL = env.str("DEFAULT_EMBEDDINGS_MODEL", default="all-MiniLM-L6-v2")
DEFAULT_EMBEDDINGS_DIMENSIONS = env.int("DEFAULT_EMBEDDINGS_DIMENSIONS", default=384)

# Egress to customer hosts: loopback/private/link-local/metadata are refused unless allow-listed here.
EGRESS_ALLOWED_NETWORKS = [ipaddress.ip_network(n, strict=False) for n in env.list("EGRESS_ALLOWED_NETWORKS", default=[])]
# The public addresses (or ranges) WizChat's connections to customers leave from — its NAT gateway's, its
# servers' — shown on the BYOI panel so that customers allow exactly these in their firewalls.
EGRESS_SOURCE_ADDRESSES = [ipaddress.ip_network(n, strict=False) for n in env.list("EGRESS_SOURCE_ADDRESSES", default=[])]
BYOI_CONNECT_TIMEOUT = env.float("BYOI_CONNECT_TIMEOUT", default=5.0)
BYOI_OPERATION_TIMEOUT = env.float("BYOI_OPERATION_TIMEOUT", default=30.0)
# Circuit breaker per component (byoi.isolation): after a transient failure, calls fail at once for this many
# seconds, doubling up to the maximum while the probe that follows keeps failing.
BYOI_BREAKER_COOLDOWN = env.float("BYOI_BREAKER_COOLDOWN", default=5.0)
BYOI_BREAKER_MAX_COOLDOWN = env.float("BYOI_BREAKER_MAX_COOLDOWN", default=60.0)
# Celery tasks that may run at once against one customer component, across all workers (byoi.access.component_slots)
BYOI_TASKS_PER_COMPONENT = env.int("BYOI_TASKS_PER_COMPONENT", default=1)
# CA certificates (PEM file) trusted for customer databases and FalkorDB in verify-ca/verify-full and SSL modes
# (empty = the system trust store), and for customers' HTTPS endpoints on top of certifi's public CAs.
BYOI_CA_BUNDLE = env.str("BYOI_CA_BUNDLE", default="")
BYOI_TEST_RATE_LIMIT = env.int("BYOI_TEST_RATE_LIMIT", default=30)  # Test Connection runs per account per minute
CONNECTION_TEST_TTL_SECONDS = env.int("CONNECTION_TEST_TTL_SECONDS", default=3600)

# The default vector store and conversations store live in the platform database (a deployed runtime names
# them with WIZCHAT_DEFAULT_STORE_URL instead: wizchat/runtime/settings.py).
DEFAULT_STORE_DATABASE = DATABASES["default"]

# Public API and widget (chatbots.publicapi). Keys are stored as keyed hashes under a key of each chatbot's
# own, derived from API_KEY_PEPPER (a deployed runtime receives only its chatbot's).
API_KEY_PEPPER = _secret("API_KEY_PEPPER")
PUBLIC_API_GATEWAY = "chatbots.gateway.PlatformGateway"
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=60)  # per key, per client address
WIDGET_RATE_LIMIT_PER_MINUTE = env.int("WIDGET_RATE_LIMIT_PER_MINUTE", default=20)  # per widget session
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)  # proxies whose X-Forwarded-For is believed
# Counters live in the Redis WizChat already runs (db 2 of the broker's server); memory:// for one process.
RATE_LIMIT_STORAGE_URL = env.str("RATE_LIMIT_STORAGE_URL", default="")

# Deployments (chatbots.deployments): where the local runtimes listen, and the image Kubernetes runs.
DEPLOY_LOCAL_HOST = env.str("DEPLOY_LOCAL_HOST", default="127.0.0.1")
DEPLOY_KUBERNETES_IMAGE = env.str("DEPLOY_KUBERNETES_IMAGE", default="wizchat/runtime:latest")
DEPLOY_KUBERNETES_NAMESPACE = env.str("DEPLOY_KUBERNETES_NAMESPACE", default="wizchat")
# Where deployed runtimes report the messages they answer (chatbots.runtime_usage; WIZCHAT_PLATFORM_URL): this
# platform as the runtimes reach it. Default: the address `make run` serves on. Empty: runtimes count nothing.
_web_host = env.str("WIZCHAT_HOST", default="127.0.0.1")
_web_host = "127.0.0.1" if _web_host in ("0.0.0.0", "::", "") else _web_host  # noqa: S104 - reached on loopback
DEPLOY_PLATFORM_URL = env.str("DEPLOY_PLATFORM_URL",
                              default=f"http://{_web_host}:{env.str('WIZCHAT_PORT', default='8000')}")
# Usage reports per minute per chatbot (a runtime sends one every WIZCHAT_USAGE_REPORT_SECONDS, 5 by default).
RUNTIME_USAGE_RATE_LIMIT_PER_MINUTE = env.int("RUNTIME_USAGE_RATE_LIMIT_PER_MINUTE", default=120)
# Readiness reports per minute per chatbot (each pod sends one every 5 s while it is not ready, every 20 s after).
RUNTIME_READINESS_RATE_LIMIT_PER_MINUTE = env.int("RUNTIME_READINESS_RATE_LIMIT_PER_MINUTE", default=240)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out account+address before any password check
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chatbots:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = STATE_DIR / "staticfiles"
MEDIA_ROOT = STATE_DIR / "media"
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"

# Log-in throttling (django-axes, wizchat.security): failures are counted per account *and* client address, so
# guessing a customer's e-mail locks out only the guesser's address, and only for the cool-off; one address
# failing across many accounts is paused too. The address is the public API's (TRUSTED_PROXY_COUNT).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the cool-off runs from the last counted failure
AXES_CLIENT_IP_CALLABLE = "chatbots.publicapi.client_address"
AXES_LOCKOUT_CALLABLE = "wizchat.views.login_locked_out"
AXES_VERBOSE = False  # no banner on every manage.py command; failures are still logged (names masked)
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=50)  # per address, all accounts

# Content-Security-Policy of every page (wizchat.security); the widget's frame sends its own. No inline scripts
# or styles anywhere: templates load static/js and static/css.
CSP_POLICY = env.str("CSP_POLICY", default=(
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"))

# HTTPS in production (`manage.py check --deploy` is clean with WIZCHAT_HTTPS=true; README "Configuration").
# Off by default so that http://127.0.0.1 development works; each setting can still be given on its own.
WIZCHAT_HTTPS = env.bool("WIZCHAT_HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=WIZCHAT_HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=WIZCHAT_HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=WIZCHAT_HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if WIZCHAT_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=WIZCHAT_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=WIZCHAT_HTTPS)
# Behind TRUSTED_PROXY_COUNT proxies the TLS ends at the first one, which must set X-Forwarded-Proto itself
# (overwriting what the client sent): only then is the request known to have come over HTTPS.
if TRUSTED_PROXY_COUNT > 0 and env.bool("TRUST_X_FORWARDED_PROTO", default=True):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"scrub_secrets": {"()": "byoi.scrub.SecretScrubFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["scrub_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # log-in failures and lockouts only (names masked), not every log-in
    },
}

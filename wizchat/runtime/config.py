"""A deployed chatbot runtime's whole configuration: its environment.

- the spec's CUSTOM_* variables: the customer's own components (byoi.envvars, with their secrets);
- WIZCHAT_* variables: which chatbot it serves and how (non-secret), and how to reach WizChat's defaults for
  the components the chatbot leaves on them (the store URLs carry a password: they are secret).

`RUNTIME_VARIABLES` is the one list: the platform builds a deployment's environment from it (chatbots.deployments),
the runtime checks its environment against it here, and Kubernetes puts the secret ones in a Secret and the
others in a ConfigMap. Nothing here reads the platform database."""

from __future__ import annotations

import datetime
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from byoi.envvars import EnvInvalid, env_to_settings
from byoi.registry import KINDS

PREFIX = "WIZCHAT_"


@dataclass(frozen=True)
class Variable:
    name: str
    help: str
    secret: bool = False
    kind: str = "str"  # str | uuid | int | url | pg_url | redis_url | networks | list | float | month | time
    required: bool = False
    # The component kind whose *default* this variable reaches: required only when that kind is not custom.
    default_of: tuple = ()
    zero: bool = False  # a float that may be 0 (turns something off)


RUNTIME_VARIABLES = [
    Variable("WIZCHAT_CHATBOT_ID", "The chatbot's UUID (names its tables and graph).", kind="uuid", required=True),
    Variable("WIZCHAT_CHATBOT_NAME", "The chatbot's name (the prompt introduces it).", required=True),
    Variable("WIZCHAT_CHATBOT_SLUG", "The chatbot's slug: the `model` of the public API.", required=True),
    Variable("WIZCHAT_CHATBOT_INSTRUCTIONS", "How the chatbot answers (tone, scope)."),
    Variable("WIZCHAT_RUNTIME_HOST", "Address to listen on (default 0.0.0.0)."),
    Variable("WIZCHAT_RUNTIME_PORT", "Port to listen on (default 8080).", kind="int"),
    Variable("WIZCHAT_RUNTIME_THREADS", "Concurrent requests (streams) served (default 32).", kind="int"),
    Variable("WIZCHAT_RUNTIME_STATE_DIR", "Writable folder for the runtime's outbox and message counts (default: a "
             "temporary folder)."),
    Variable("WIZCHAT_API_KEYS", "The chatbot's API keys as prefix:hash pairs, comma-separated (no plaintext).",
             secret=True, kind="list"),
    Variable("WIZCHAT_API_KEY_PEPPER", "The chatbot's key-hashing key (verifies WIZCHAT_API_KEYS).", secret=True),
    Variable("WIZCHAT_ALLOWED_ORIGINS", "Websites allowed to embed the widget, comma-separated (empty: none).",
             kind="list"),
    Variable("WIZCHAT_RATE_LIMIT", "Requests per minute per API key and per client address (default 60).",
             kind="int"),
    Variable("WIZCHAT_TRUSTED_PROXIES", "Proxies in front of the runtime whose X-Forwarded-For is believed "
             "(default 0).", kind="int"),
    Variable("WIZCHAT_PLATFORM_TOKEN", "Shared with the platform: lets it see component locations in /readyz, "
             "authenticates the runtime's usage reports.", secret=True),
    Variable("WIZCHAT_PLATFORM_URL", "Where the runtime reports the messages it answers, for the plan's monthly "
             "quota (empty: counted locally and never reported; only the quota seed below is enforced).", kind="url"),
    Variable("WIZCHAT_USAGE_REPORT_SECONDS", "How often usage is reported (default 5).", kind="float"),
    # The quota seed: the account's count and the plan's limit when the chatbot was deployed, so that the runtime
    # enforces the quota from its first question even before it reaches the platform; its reports refine it.
    Variable("WIZCHAT_QUOTA_MONTH", "The month of WIZCHAT_QUOTA_USED (YYYY-MM).", kind="month"),
    Variable("WIZCHAT_QUOTA_USED", "The account's messages that month when the chatbot was deployed.", kind="int"),
    Variable("WIZCHAT_QUOTA_LIMIT", "The plan's messages a month when the chatbot was deployed.", kind="int"),
    Variable("WIZCHAT_QUOTA_PLAN", "The plan's name (for the quota message)."),
    Variable("WIZCHAT_QUOTA_AT", "When those were read (ISO 8601, UTC): the runtime keeps whichever it knows of "
             "later, this or the platform's last answer.", kind="time"),
    Variable("WIZCHAT_DEPLOY_GENERATION", "The deploy that started this runtime (1, 2, …): its readiness reports "
             "name it, and the platform believes only those of the deployment's latest deploy.", kind="int"),
    Variable("WIZCHAT_OUTBOX_KEY", "Encrypts messages waiting for the conversations database.", secret=True),
    Variable("WIZCHAT_CONNECT_TIMEOUT", "Connect timeout to every component, seconds (default 5).", kind="float"),
    Variable("WIZCHAT_OPERATION_TIMEOUT", "Operation timeout, seconds (default 30).", kind="float"),
    Variable("WIZCHAT_BREAKER_COOLDOWN", "How long a failed component is refused at once before it is tried "
             "again, seconds (default 5; doubles while it keeps failing; 0: off).", kind="float", zero=True),
    Variable("WIZCHAT_BREAKER_MAX_COOLDOWN", "The longest such cool-down, seconds (default 60).", kind="float"),
    Variable("WIZCHAT_EGRESS_ALLOWED_NETWORKS", "Private networks the customer's components may be on.",
             kind="networks"),
    Variable("WIZCHAT_CA_BUNDLE", "CA file trusted for the customer's TLS servers."),
    Variable("WIZCHAT_DEFAULT_LLM_ENDPOINT", "WizChat's default LLM (OpenAI-compatible base URL).", kind="url",
             default_of=("llm",)),
    Variable("WIZCHAT_DEFAULT_LLM_MODEL", "WizChat's default LLM model.", default_of=("llm",)),
    Variable("WIZCHAT_DEFAULT_LLM_API_KEY", "WizChat's default LLM key.", secret=True),
    Variable("WIZCHAT_DEFAULT_EMBEDDINGS_ENDPOINT", "WizChat's default embeddings endpoint (empty: in-process).",
             kind="url"),
    Variable("WIZCHAT_DEFAULT_EMBEDDINGS_MODEL", "WizChat's default embeddings model."),
    Variable("WIZCHAT_DEFAULT_EMBEDDINGS_DIMENSIONS", "WizChat's default embeddings dimensions.", kind="int"),
    Variable("WIZCHAT_DEFAULT_EMBEDDINGS_API_KEY", "WizChat's default embeddings key.", secret=True),
    Variable("WIZCHAT_DEFAULT_STORE_URL", "WizChat's default PostgreSQL (vector store, conversations).",
             secret=True, kind="pg_url", default_of=("vector_store", "conversations")),
    Variable("WIZCHAT_DEFAULT_FALKORDB_URL", "WizChat's default FalkorDB.", secret=True, kind="redis_url",
             default_of=("graph",)),
]
VARIABLES = {v.name: v for v in RUNTIME_VARIABLES}
SECRET_NAMES = frozenset(v.name for v in RUNTIME_VARIABLES if v.secret)


def is_secret(name: str) -> bool:
    """Whether a deployment variable (CUSTOM_* or WIZCHAT_*) holds a secret."""
    if name in VARIABLES:
        return name in SECRET_NAMES
    return any(f.env == name and f.secret for kind in KINDS.values() for f in kind.fields)


@dataclass
class RuntimeConfig:
    chatbot_id: uuid.UUID
    name: str
    slug: str
    instructions: str = ""
    custom: dict = field(default_factory=dict, repr=False)  # {kind: settings} from CUSTOM_*
    values: dict = field(default_factory=dict, repr=False)  # WIZCHAT_* as typed values


class ConfigInvalid(ValueError):
    """`.problems`: one line per variable, never a secret's value."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _shown(name: str, raw: str) -> str:
    """`NAME=value` for a plain variable, `NAME` alone for a secret (its value is never printed)."""
    if is_secret(name) or not raw:
        return name
    value = raw if len(raw) <= 60 else raw[:57] + "…"
    return f"{name}={value}"


def _typed(variable: Variable, raw: str):
    text = raw.strip()
    if any(ord(c) < 32 for c in text):
        raise ValueError("must not contain control characters")
    if variable.kind == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise ValueError("must be a UUID (the chatbot's id)") from None
    if variable.kind == "int":
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if variable.name == "WIZCHAT_RUNTIME_PORT" and not 1 <= value <= 65535:
            raise ValueError("a port is a whole number from 1 to 65535")
        if value < 0:
            raise ValueError("must not be negative")
        return value
    if variable.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not (0 <= value if variable.zero else 0 < value) or value > 3600:
            raise ValueError("must be between 0 and 3600 seconds")
        return value
    if variable.kind == "month":
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
            raise ValueError("must be a month like 2026-03")
        return text
    if variable.kind == "time":
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("must be an ISO 8601 time like 2026-03-01T12:00:00+00:00") from None
        if moment.tzinfo is None:
            raise ValueError("must name its time zone, like 2026-03-01T12:00:00+00:00")
        return moment.timestamp()
    if variable.kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if variable.kind == "networks":
        try:
            return [ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip()]
        except ValueError:
            raise ValueError("must be networks like 10.20.0.0/16, comma-separated") from None
    if variable.kind in ("url", "pg_url", "redis_url"):
        parts = urlsplit(text)
        schemes = {"url": ("http", "https"), "pg_url": ("postgres", "postgresql"),
                   "redis_url": ("redis", "rediss")}[variable.kind]
        if parts.scheme not in schemes or not parts.hostname:
            example = {"url": "https://llm.example.com/v1", "pg_url": "postgres://user:password@host:5432/db",
                       "redis_url": "redis://:password@host:6379"}[variable.kind]
            raise ValueError(f"must be a {' or '.join(s + '://' for s in schemes)} URL, like {example}")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError("has a malformed port: a port is a whole number from 1 to 65535") from None
        return text
    return text


def config_load(environ) -> RuntimeConfig:
    """The runtime's configuration from `environ`, or ConfigInvalid listing every problem at once."""
    problems: list[str] = []
    custom: dict = {}
    try:
        custom = env_to_settings(environ)
    except EnvInvalid as error:
        for name, message in sorted(error.errors.items()):
            problems.append(f"{_shown(name, environ.get(name, ''))}: {message}")
    # Which kinds the customer brings is read off the variables present, even when some are malformed.
    brought = {kind.slug for kind in KINDS.values() if any(f.env in environ for f in kind.fields)}
    values: dict = {}
    for name in sorted(k for k in environ if k.startswith(PREFIX) and k not in VARIABLES):
        if name.startswith(("WIZCHAT_DEFAULT_", "WIZCHAT_CHATBOT_")):  # a typo of ours, not someone else's
            problems.append(f"{name}: unknown variable; see the runtime's variables in README (Deploy a chatbot).")
    for variable in RUNTIME_VARIABLES:
        raw = environ.get(variable.name, "")
        if raw.strip() == "":
            needed = variable.required or any(kind not in brought for kind in variable.default_of)
            if needed:
                why = variable.help
                if variable.default_of:
                    kinds = " and ".join(KINDS[k].label for k in variable.default_of if k not in brought)
                    why = f"{kinds} {'use' if ' and ' in kinds else 'uses'} WizChat's default: {variable.help}"
                problems.append(f"{variable.name}: missing. {why}")
            continue
        try:
            values[variable.name] = _typed(variable, raw)
        except ValueError as error:
            problems.append(f"{_shown(variable.name, raw)}: {error}")
    if problems:
        raise ConfigInvalid(problems)
    return RuntimeConfig(chatbot_id=values["WIZCHAT_CHATBOT_ID"], name=values["WIZCHAT_CHATBOT_NAME"],
                         slug=values["WIZCHAT_CHATBOT_SLUG"],
                         instructions=values.get("WIZCHAT_CHATBOT_INSTRUCTIONS", ""), custom=custom, values=values)


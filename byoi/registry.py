"""The one registry of component kinds. Model choices, forms, masking (the only list of secret fields),
CUSTOM_* variables, the platform defaults, the resolver, the data-locations panel and byoi_migrate all
derive from it; nothing else branches on a kind. Code is named by dotted path, so this module imports
nothing of WizChat's and a standalone runtime can read it alone."""

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import certs, providers

# How a boolean setting (FalkorDB's SSL) may be spelled in a form, the admin or a CUSTOM_* variable.
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})
SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
MAX_TEXT = 255
MAX_URL = 2000
MAX_SECRET = 4096
MAX_PEM = 100_000  # a CA bundle of a few dozen certificates; a CUSTOM_* variable must stay well under 128 KiB


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    env: str  # the spec's CUSTOM_* variable
    kind: str = "str"  # str | host | url | int | bool | choice | pem (secret: certificates, several lines)
    required: bool = True
    secret: bool = False
    default: object = None
    help: str = ""
    choices: tuple = ()
    # Changing this field makes a stored secret invalid for reuse (a new host must not get the old password).
    rebinds_secret: bool = False
    # Protects the secret in transit (SSL mode, SSL on/off): weakening it needs the secret typed again.
    guards_secret: bool = False
    range: tuple[int, int] = (1, 2**31 - 1)  # int fields: the accepted values, both ends included
    spaces: bool = True  # False for names (host, user, database, model) that never hold a space
    locates: bool = False  # says where the component lives: shown on the chatbot page (never a secret or a user)
    api: str = ""  # url fields: the OpenAI-compatible API the endpoint serves ("chat" or "embeddings")

    @property
    def reusable(self) -> bool:
        """A stored secret that stays valid when the address changes: a CA certificate is trust, not a
        credential, so a new host does not make the customer paste it again."""
        return self.kind == "pem"

    def weakened(self, old, new) -> bool:
        """Whether `new` protects the secret less than `old` did: an SSL mode lower in `choices` (weakest
        first), or SSL turned off."""
        if not self.guards_secret or old is None or old == new:
            return False
        if self.kind == "bool":
            return bool(old) and not new
        return new in self.choices and old in self.choices and self.choices.index(new) < self.choices.index(old)

    @property
    def max_length(self) -> int:
        return MAX_PEM if self.kind == "pem" else MAX_SECRET

    def coerce_secret(self, raw: str) -> str:
        """The value to store for this secret field, or ValueError naming the field (never quoting the value)."""
        if len(raw) > self.max_length:
            raise ValueError(f"{self.label} is too long.")
        if "\x00" in raw:
            raise ValueError(f"{self.label} must not contain a NUL character.")
        if self.kind == "pem":
            try:
                return certs.normalize(raw)
            except ValueError as error:
                raise ValueError(f"{self.label}: {error}") from None
        return raw

    def coerce(self, raw):
        """The typed value of this non-secret field, or ValueError with a message naming the field.

        Values are echoed back in messages only for non-secret fields."""
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in TRUE_WORDS:
                return True
            if text in FALSE_WORDS:
                return False
            raise ValueError(f"{self.label} must be true or false.")
        if self.kind == "int":
            if isinstance(raw, bool):
                raise ValueError(f"{self.label} must be a whole number.")
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ValueError(f"{self.label} must be a whole number, not “{str(raw)[:40]}”.") from None
            low, high = self.range
            if not low <= value <= high:
                raise ValueError(f"{self.label} must be between {low} and {high}.")
            return value
        text = str(raw).strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError(f"{self.label} must not contain control characters.")
        if self.kind == "choice":
            if text not in self.choices:
                raise ValueError(f"{self.label} must be one of: {', '.join(self.choices)}.")
            return text
        if self.kind == "url":
            return self._url(text)
        if len(text) > MAX_TEXT:
            raise ValueError(f"{self.label} is too long (at most {MAX_TEXT} characters).")
        if not self.spaces and any(c.isspace() for c in text):
            raise ValueError(f"{self.label} must not contain spaces.")
        if self.kind == "host":
            if "://" in text or "/" in text:
                raise ValueError(f"{self.label} must be a host name or IP address only, e.g. your-db.com (no scheme "
                                 "or path).")
            if ":" in text and not _is_ipv6(text):
                raise ValueError(f"{self.label} must not include the port; put it in Port.")
        return text

    def _url(self, text: str) -> str:
        if len(text) > MAX_URL:
            raise ValueError(f"{self.label} is too long.")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{self.label} must be an http:// or https:// URL, e.g. https://your-api.com/v1.")
        if parts.username or parts.password:
            # The URL would carry a credential in a field that is shown back in the UI.
            raise ValueError(f"{self.label} must not contain a user name or password; put the key in API Key.")
        if parts.fragment:
            raise ValueError(f"{self.label} must be the API's base URL, without #fragment.")
        try:
            parts.port  # noqa: B018 - raises for a non-numeric or out-of-range port
        except ValueError:
            raise ValueError(f"{self.label} has an invalid port.") from None
        try:
            return providers.normalize(text, api=self.api)
        except ValueError as error:
            raise ValueError(f"{self.label} {error}") from None


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")).version == 6
    except ValueError:
        return False


@dataclass(frozen=True)
class Kind:
    slug: str
    label: str
    description: str
    backend: str  # dotted path of the backend class used for the custom component
    check: str  # dotted path of the Test Connection steps function
    defaults: str  # dotted path of the function returning the platform's default settings (no egress guard)
    holds: str  # data locations panel: what it does for a chatbot, or (stores) the unit it counts
    fields: tuple = field(default_factory=tuple)
    # The default's backend when the platform names no endpoint for it (in-process).
    local_backend: str = ""
    # Holds the chatbot's data (vectors, graph, messages): counted on the chatbot page, migrated by
    # byoi_migrate, purged from the defaults when a chatbot is deleted. LLM and embeddings only compute.
    stores_data: bool = False
    move: str = ""  # byoi_migrate: dotted path of the function that copies this kind's data
    move_unit: str = ""  # byoi_migrate: what one copied item is ("chunks"…)
    embedded: bool = False  # holds vectors of the chatbot's embeddings: a move may have to embed them again
    # Endpoint kinds: the providers' URL patterns shown beside the fields (byoi.providers.EXAMPLES).
    examples: tuple = ()
    # What Test Connection needs from another component of the chatbot: (setting the check reads, kind, field).
    # The vector store is probed with the dimensions the chatbot's embeddings really have.
    check_context: tuple = ()

    @property
    def secret_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.secret]

    @property
    def plain_fields(self) -> list[str]:
        return [f.name for f in self.fields if not f.secret]

    @property
    def location_fields(self) -> list[Field]:
        return [f for f in self.fields if f.locates]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


PORTS = (1, 65535)


def _pg_fields(prefix: str) -> tuple:
    return (
        Field("host", "Host", f"{prefix}_HOST", kind="host", spaces=False, help="Database host", rebinds_secret=True,
              locates=True),
        Field("port", "Port", f"{prefix}_PORT", kind="int", default=5432, help="Database port (default: 5432)",
              rebinds_secret=True, range=PORTS, locates=True),
        Field("database", "Database", f"{prefix}_DATABASE", spaces=False, help="Database name", rebinds_secret=True,
              locates=True),
        Field("username", "Username", f"{prefix}_USER", spaces=False, help="Database user", rebinds_secret=True),
        Field("password", "Password", f"{prefix}_PASSWORD", secret=True, help="Database password"),
        Field("ssl_mode", "SSL Mode", f"{prefix}_SSL_MODE", kind="choice", default="require",
              choices=tuple(SSL_MODES), help="SSL connection mode", guards_secret=True),
        _ca_field(f"{prefix}_CA_CERT", "verify-ca or verify-full"),
    )


def _ca_field(env: str, used_with: str) -> Field:
    return Field("ca_cert", "CA certificate (PEM)", env, kind="pem", secret=True, required=False,
                 help=f"Optional: the CA that signed your server's certificate (-----BEGIN CERTIFICATE-----…), e.g. "
                      f"your cloud's RDS or Cloud SQL CA or your own. Used with {used_with} instead of WizChat's "
                      "trusted CAs. Stored encrypted.")


API_KEY_HELP = ("Authentication key. Leave blank for servers without one (Ollama; vLLM or LocalAI without an API key). "
                "Azure OpenAI: the resource's key.")


KINDS: dict[str, Kind] = {
    k.slug: k
    for k in [
        Kind(
            "llm", "LLM", "Use your own OpenAI-compatible endpoint",
            backend="byoi.backends.llm.OpenAICompatibleLLM",
            check="byoi.checks.llm.steps",
            defaults="byoi.defaults.llm",
            holds="Answers",
            fields=(
                Field("endpoint", "API Endpoint", "CUSTOM_LLM_ENDPOINT", kind="url", api="chat",
                      help="Base URL (e.g., https://your-api.com/v1)", rebinds_secret=True, locates=True),
                Field("api_key", "API Key", "CUSTOM_LLM_API_KEY", secret=True, required=False, help=API_KEY_HELP),
                Field("model", "Model Name", "CUSTOM_LLM_MODEL", spaces=False, locates=True,
                      help="Model identifier (e.g., gpt-4o, llama-3.1-70b); for Azure OpenAI, the deployment name"),
            ),
            examples=tuple((e.provider, e.llm, e.note) for e in providers.EXAMPLES if e.llm),
        ),
        Kind(
            "embeddings", "Embeddings", "Use your own embedding service",
            backend="byoi.backends.embeddings.OpenAICompatibleEmbeddings",
            check="byoi.checks.embeddings.steps",
            defaults="byoi.defaults.embeddings",
            local_backend="byoi.backends.embeddings.LocalEmbeddings",
            holds="Document and question vectors",
            fields=(
                Field("endpoint", "API Endpoint", "CUSTOM_EMBEDDINGS_ENDPOINT", kind="url", api="embeddings",
                      help="Base URL for embeddings", rebinds_secret=True, locates=True),
                Field("api_key", "API Key", "CUSTOM_EMBEDDINGS_API_KEY", secret=True, required=False,
                      help=API_KEY_HELP),
                Field("model", "Model Name", "CUSTOM_EMBEDDINGS_MODEL", spaces=False, locates=True,
                      help="Embedding model (e.g., text-embedding-3-large)"),
                Field("dimensions", "Dimensions", "CUSTOM_EMBEDDINGS_DIMENSIONS", kind="int", default=3072,
                      help="Vector dimensions (default: 3072)", range=(1, 16000), locates=True),
            ),
            examples=tuple((e.provider, e.embeddings, e.note) for e in providers.EXAMPLES if e.embeddings),
        ),
        Kind(
            "vector_store", "Vector Store", "Use your own PostgreSQL with pgvector",
            backend="byoi.backends.vector_store.PgVectorStore",
            check="byoi.checks.vector_store.steps",
            defaults="byoi.defaults.postgres",
            holds="chunk",
            stores_data=True,
            move="byoi.datamove.copy_vectors",
            move_unit="chunks",
            embedded=True,
            fields=_pg_fields("CUSTOM_PGVECTOR"),
            check_context=(("embedding_dimensions", "embeddings", "dimensions"),),
        ),
        Kind(
            "graph", "FalkorDB", "Use your own graph database for GraphRAG",
            backend="byoi.backends.graph.FalkorGraph",
            check="byoi.checks.graph.steps",
            defaults="byoi.defaults.falkordb",
            holds="graph node",
            stores_data=True,
            move="byoi.datamove.copy_graph",
            move_unit="chunk nodes",
            fields=(
                Field("host", "Host", "CUSTOM_FALKORDB_HOST", kind="host", spaces=False, help="FalkorDB host",
                      rebinds_secret=True, locates=True),
                Field("port", "Port", "CUSTOM_FALKORDB_PORT", kind="int", default=6379,
                      help="FalkorDB port (default: 6379)", rebinds_secret=True, range=PORTS, locates=True),
                Field("password", "Password", "CUSTOM_FALKORDB_PASSWORD", secret=True, required=False,
                      help="Connection password (optional)"),
                Field("ssl", "SSL", "CUSTOM_FALKORDB_SSL", kind="bool", default=True, required=False,
                      help="Enable SSL connection", guards_secret=True),
                _ca_field("CUSTOM_FALKORDB_CA_CERT", "SSL on"),
            ),
        ),
        Kind(
            "conversations", "Conversations", "Use your own PostgreSQL for chat history",
            backend="byoi.backends.conversation_store.PgConversationStore",
            check="byoi.checks.conversations.steps",
            defaults="byoi.defaults.postgres",
            holds="message",
            stores_data=True,
            move="byoi.datamove.copy_messages",
            move_unit="messages",
            fields=_pg_fields("CUSTOM_CONVERSATIONS"),
        ),
    ]
}

STORE_KINDS = tuple(slug for slug, kind in KINDS.items() if kind.stores_data)
KIND_CHOICES = [(k.slug, k.label) for k in KINDS.values()]
SECRET_FIELD_NAMES = sorted({f.name for k in KINDS.values() for f in k.fields if f.secret})


def label(kind: str) -> str:
    """The kind's label ("Vector Store"); "BYOI" for the chatbot's BYOI settings as a whole (kind "byoi")."""
    return KINDS[kind].label if kind in KINDS else "BYOI"

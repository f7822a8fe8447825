"""The one registry of component kinds. Model choices, forms, masking, CUSTOM_* variables and the
resolver all derive from it; nothing else branches on a kind."""

from dataclasses import dataclass, field

# How a boolean setting (FalkorDB's SSL) may be spelled in a form, the admin or a CUSTOM_* variable.
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})
SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    env: str  # the spec's CUSTOM_* variable
    kind: str = "str"  # str | url | int | bool | choice
    required: bool = True
    secret: bool = False
    default: object = None
    help: str = ""
    choices: tuple = ()
    # Changing this field makes a stored secret invalid for reuse (a new host must not get the old password).
    rebinds_secret: bool = False


@dataclass(frozen=True)
class Kind:
    slug: str
    label: str
    description: str
    backend: str  # dotted path of the backend class used for the custom component
    check: str  # dotted path of the Test Connection steps function
    fields: tuple = field(default_factory=tuple)
    # Holds the chatbot's data (vectors, graph, messages): migrated by byoi_migrate, purged from the
    # defaults when a chatbot is deleted. LLM and embeddings only compute.
    stores_data: bool = False

    @property
    def secret_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.secret]

    @property
    def plain_fields(self) -> list[str]:
        return [f.name for f in self.fields if not f.secret]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


def _pg_fields(prefix: str) -> tuple:
    return (
        Field("host", "Host", f"{prefix}_HOST", help="Database host", rebinds_secret=True),
        Field("port", "Port", f"{prefix}_PORT", kind="int", default=5432, help="Database port (default: 5432)",
              rebinds_secret=True),
        Field("database", "Database", f"{prefix}_DATABASE", help="Database name", rebinds_secret=True),
        Field("username", "Username", f"{prefix}_USER", help="Database user", rebinds_secret=True),
        Field("password", "Password", f"{prefix}_PASSWORD", secret=True, help="Database password"),
        Field("ssl_mode", "SSL Mode", f"{prefix}_SSL_MODE", kind="choice", default="require",
              choices=tuple(SSL_MODES), help="SSL connection mode"),
    )


KINDS: dict[str, Kind] = {
    k.slug: k
    for k in [
        Kind(
            "llm", "LLM", "Use your own OpenAI-compatible endpoint",
            backend="byoi.backends.llm.OpenAICompatibleLLM",
            check="byoi.checks.llm.steps",
            fields=(
                Field("endpoint", "API Endpoint", "CUSTOM_LLM_ENDPOINT", kind="url",
                      help="Base URL (e.g., https://your-api.com/v1)", rebinds_secret=True),
                Field("api_key", "API Key", "CUSTOM_LLM_API_KEY", secret=True, help="Authentication key"),
                Field("model", "Model Name", "CUSTOM_LLM_MODEL",
                      help="Model identifier (e.g., gpt-4o, llama-3.1-70b)"),
            ),
        ),
        Kind(
            "embeddings", "Embeddings", "Use your own embedding service",
            backend="byoi.backends.embeddings.OpenAICompatibleEmbeddings",
            check="byoi.checks.embeddings.steps",
            fields=(
                Field("endpoint", "API Endpoint", "CUSTOM_EMBEDDINGS_ENDPOINT", kind="url",
                      help="Base URL for embeddings", rebinds_secret=True),
                Field("api_key", "API Key", "CUSTOM_EMBEDDINGS_API_KEY", secret=True, help="Authentication key"),
                Field("model", "Model Name", "CUSTOM_EMBEDDINGS_MODEL",
                      help="Embedding model (e.g., text-embedding-3-large)"),
                Field("dimensions", "Dimensions", "CUSTOM_EMBEDDINGS_DIMENSIONS", kind="int", default=3072,
                      help="Vector dimensions (default: 3072)"),
            ),
        ),
        Kind(
            "vector_store", "Vector Store", "Use your own PostgreSQL with pgvector",
            backend="byoi.backends.vector_store.PgVectorStore",
            check="byoi.checks.vector_store.steps",
            stores_data=True,
            fields=_pg_fields("CUSTOM_PGVECTOR"),
        ),
        Kind(
            "graph", "FalkorDB", "Use your own graph database for GraphRAG",
            backend="byoi.backends.graph.FalkorGraph",
            check="byoi.checks.graph.steps",
            stores_data=True,
            fields=(
                Field("host", "Host", "CUSTOM_FALKORDB_HOST", help="FalkorDB host", rebinds_secret=True),
                Field("port", "Port", "CUSTOM_FALKORDB_PORT", kind="int", default=6379,
                      help="FalkorDB port (default: 6379)", rebinds_secret=True),
                Field("password", "Password", "CUSTOM_FALKORDB_PASSWORD", secret=True, required=False,
                      help="Connection password (optional)"),
                Field("ssl", "SSL", "CUSTOM_FALKORDB_SSL", kind="bool", default=True, required=False,
                      help="Enable SSL connection"),
            ),
        ),
        Kind(
            "conversations", "Conversations", "Use your own PostgreSQL for chat history",
            backend="byoi.backends.conversation_store.PgConversationStore",
            check="byoi.checks.conversations.steps",
            stores_data=True,
            fields=_pg_fields("CUSTOM_CONVERSATIONS"),
        ),
    ]
}

STORE_KINDS = tuple(slug for slug, kind in KINDS.items() if kind.stores_data)
KIND_CHOICES = [(k.slug, k.label) for k in KINDS.values()]
SECRET_FIELD_NAMES = sorted({f.name for k in KINDS.values() for f in k.fields if f.secret})

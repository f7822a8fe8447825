"""One error taxonomy for Test Connection and the chat path, with the spec's troubleshooting hints."""

TIMEOUT_HINT = "Connection Timeout: check firewall rules, verify the host is reachable, confirm the port is open."
AUTH_HINT = "Authentication Failed: verify the API key or password, check user permissions, confirm the account is active."
SSL_HINT = ("SSL Error: match the SSL mode with the server configuration, verify certificate validity, "
            "try different SSL modes.")

HINTS: dict[str, str] = {
    "timeout": TIMEOUT_HINT,
    "dns": "The host name does not resolve: check the spelling and that it is published in public DNS.",
    "refused": "Connection refused: " + TIMEOUT_HINT.split(": ", 1)[1] + " Check that the service listens on this port.",
    "blocked_address": ("This address is on a private, loopback, link-local or metadata network that WizChat does "
                        "not connect to. Use a publicly reachable host name or address."),
    "tls": SSL_HINT,
    "auth": AUTH_HINT,
    "permission": ("The account lacks a required permission. Grant it (for databases: CREATE on the database or "
                   "schema) to the dedicated service account — never use admin credentials."),
    "version": "The server version is too old: PostgreSQL 14+ with pgvector, or FalkorDB 4.0+, is required.",
    "extension_missing": ("The pgvector extension is not installed in this database and this user cannot create "
                          "it. Ask your DBA to run: CREATE EXTENSION vector;"),
    "model_not_found": "The endpoint does not serve this model. Check the Model Name against the provider's list.",
    "dimension_mismatch": ("The vectors have a different length than Dimensions. Set Dimensions to the model's "
                           "output size, or choose a model that supports the requested size."),
    "protocol": ("The server did not answer like an OpenAI-compatible API. Check that the endpoint is the API's "
                 "base URL (usually ending in /v1)."),
    "config": "A setting is missing or invalid. Correct the highlighted field.",
    "unavailable": "The component failed. Check its status and try again.",
}
CODES = list(HINTS)


class NotFound(Exception):
    """What was asked for does not exist, or belongs to another account. Services raise it; views answer 404
    (never saying which of the two it was)."""


class BackendError(Exception):
    """A component failure classified into the taxonomy. Its message never contains a secret."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        assert code in HINTS, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint if hint is not None else HINTS[code]

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable, so Celery can record it
        return (type(self), (self.code, self.message, self.hint))

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}

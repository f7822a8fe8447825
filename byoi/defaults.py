"""The platform's default component settings, one function per kind (the registry's Kind.defaults names
them). Trusted servers from WizChat's own settings: `egress_guard: False`."""

from urllib.parse import unquote, urlsplit

from django.conf import settings as dj

_LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}


def postgres() -> dict:
    """The vector store's and the conversations' default: the platform's PostgreSQL (with pgvector)."""
    db = dj.DEFAULT_STORE_DATABASE
    host = db.get("HOST") or "127.0.0.1"
    ssl_mode = (db.get("OPTIONS") or {}).get("sslmode") or ("disable" if host in _LOOPBACK else "prefer")
    return {"host": host, "port": int(db.get("PORT") or 5432), "database": db.get("NAME") or "",
            "username": db.get("USER") or "", "password": db.get("PASSWORD") or "", "ssl_mode": ssl_mode,
            "egress_guard": False}


def falkordb() -> dict:
    url = urlsplit(dj.FALKORDB_URL)
    return {"host": url.hostname or "127.0.0.1", "port": url.port or 6379,
            "password": unquote(url.password) if url.password else "", "ssl": url.scheme == "rediss",
            "egress_guard": False}


def llm() -> dict:
    return {"endpoint": dj.DEFAULT_LLM_ENDPOINT, "api_key": dj.DEFAULT_LLM_API_KEY,
            "model": dj.DEFAULT_LLM_MODEL, "egress_guard": False}


def embeddings() -> dict:
    """No endpoint: the in-process model (the registry's local_backend) serves the default."""
    return {"endpoint": dj.DEFAULT_EMBEDDINGS_ENDPOINT, "api_key": dj.DEFAULT_EMBEDDINGS_API_KEY or "",
            "model": dj.DEFAULT_EMBEDDINGS_MODEL, "dimensions": dj.DEFAULT_EMBEDDINGS_DIMENSIONS,
            "egress_guard": False}

"""What WizChat knows of the OpenAI-compatible APIs the spec names ("Compatible with"): how each one's URL is
shaped, which header carries the key, and which embedding parameters it accepts.

The customer pastes one API Endpoint; the provider is recognised from it (the host, or Azure's
/openai/deployments/ path, which API gateways in front of Azure keep). Anything not recognised is a generic
OpenAI-compatible server (Ollama, vLLM, LocalAI, a proxy in front of Bedrock or Vertex AI…) and gets what
OpenAI's own API accepts. Standard library only: the registry validates URLs with it and a standalone runtime
reads it alone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

AZURE_API_VERSION = "2024-10-21"  # the GA version quoted in examples and messages
AZURE_HOSTS = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/[^/]+")
AZURE_V1 = "/openai/v1"
# A URL copied from a provider's page often names one operation; the base is what comes before it.
OPERATION_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/models")
_API_VERSION = re.compile(r"[0-9A-Za-z.\-]{1,40}")
OLLAMA_PORT = 11434
# Ollama's own routes (after an operation suffix is stripped): not its OpenAI-compatible /v1.
OLLAMA_NATIVE = ("/api", "/api/chat", "/api/generate", "/api/embed", "/api/tags")

AZURE_CLASSIC_EXAMPLE = f"https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT?api-version={AZURE_API_VERSION}"
AZURE_V1_EXAMPLE = "https://RESOURCE.openai.azure.com/openai/v1"
COHERE_BASE = "https://api.cohere.ai/compatibility/v1"
VERTEX_EXAMPLE = "https://LOCATION-aiplatform.googleapis.com/v1/projects/PROJECT/locations/LOCATION/endpoints/openapi"


@dataclass(frozen=True)
class Provider:
    slug: str
    label: str
    key_header: str = "Authorization"  # "api-key" (Azure): the key alone, no "Bearer"
    encoding_format: str | None = "float"  # None: not sent (Voyage AI refuses "float")
    dimensions_param: str = "dimensions"  # Voyage AI: output_dimension
    # Model-name prefixes that accept the dimensions parameter; other models get none (most reject it).
    dimension_models: tuple[str, ...] = ("text-embedding-3",)
    embeddings_only: bool = False

    def dimensions_param_for(self, model: str) -> str | None:
        """The name of the dimensions parameter this model accepts, None when it accepts none."""
        name = model.strip().lower()
        return self.dimensions_param if any(name.startswith(p) for p in self.dimension_models) else None


GENERIC = Provider("openai-compatible", "OpenAI-compatible server")
OPENAI = Provider("openai", "OpenAI")
# Azure's Model Name is a deployment name, which says nothing of the model: dimensions is always sent, and a
# deployment that refuses it (ada-002) is asked again without (byoi.backends.embeddings).
AZURE = Provider("azure", "Azure OpenAI", key_header="api-key", dimension_models=("",))
VOYAGE = Provider("voyage", "Voyage AI", encoding_format=None, dimensions_param="output_dimension",
                  dimension_models=("voyage-3-large", "voyage-3.5", "voyage-code-3", "voyage-4", "voyage-context-3"),
                  embeddings_only=True)
COHERE = Provider("cohere", "Cohere")
BEDROCK = Provider("bedrock", "Amazon Bedrock")
VERTEX = Provider("vertex", "Google Vertex AI")


@dataclass(frozen=True)
class Example:
    provider: str
    llm: str
    embeddings: str
    note: str = ""


# Shown beside the API Endpoint field (templates/byoi/partials/_component.html).
EXAMPLES = (
    Example("OpenAI", "https://api.openai.com/v1", "https://api.openai.com/v1"),
    Example("Azure OpenAI", AZURE_V1_EXAMPLE, AZURE_CLASSIC_EXAMPLE,
            "Either form works for both: the v1 base with the deployment name as Model Name, or the deployment's "
            "URL with ?api-version=. The key goes in API Key (sent as the api-key header)."),
    Example("Ollama", "http://HOST:11434/v1", "http://HOST:11434/v1", "No API key needed."),
    Example("vLLM", "http://HOST:8000/v1", "http://HOST:8000/v1", "API Key only if started with --api-key."),
    Example("LocalAI", "http://HOST:8080/v1", "http://HOST:8080/v1", "API Key only if LocalAI has API_KEY set."),
    Example("AWS Bedrock (via proxy)", "https://YOUR-GATEWAY/api/v1", "https://YOUR-GATEWAY/api/v1",
            "An OpenAI-compatible gateway in front of Bedrock (Bedrock Access Gateway, LiteLLM); Model Name is the "
            "Bedrock model id, e.g. anthropic.claude-3-5-sonnet-20240620-v1:0. Bedrock's own API is not "
            "OpenAI-compatible."),
    Example("Google Vertex AI (via proxy)", "https://YOUR-PROXY/v1", "https://YOUR-PROXY/v1",
            "An OpenAI-compatible proxy (e.g. LiteLLM) holding the Google credentials: Vertex's own endpoint takes "
            "access tokens that expire within an hour."),
    Example("Cohere", COHERE_BASE, COHERE_BASE, "Only Cohere's compatibility API works (not /v1 or /v2)."),
    Example("Voyage AI", "", "https://api.voyageai.com/v1", "Embeddings only. Dimensions: the model's size "
            "(1024 for most; 256, 512 or 2048 where the model offers them)."),
)


def _host(parts) -> str:
    return (parts.hostname or "").lower()


def detect(endpoint: str) -> Provider:
    """The provider an API Endpoint belongs to (GENERIC when not recognised)."""
    try:
        parts = urlsplit((endpoint or "").strip())
    except ValueError:
        return GENERIC
    host, path = _host(parts), parts.path.rstrip("/")
    if host.endswith(AZURE_HOSTS) or AZURE_DEPLOYMENT.search(path):
        return AZURE
    if host == "api.openai.com":
        return OPENAI
    if host.endswith("voyageai.com"):
        return VOYAGE
    if host in ("api.cohere.com", "api.cohere.ai"):
        return COHERE
    if re.fullmatch(r"bedrock[a-z-]*\.[a-z0-9-]+\.amazonaws\.com", host):
        return BEDROCK
    if host.endswith("aiplatform.googleapis.com"):
        return VERTEX
    return GENERIC


def split(endpoint: str) -> tuple[str, dict[str, str]]:
    """(base URL without the query, query parameters): Azure's api-version travels as a query on every call."""
    parts = urlsplit((endpoint or "").strip())
    base = parts._replace(query="", fragment="").geturl().rstrip("/")
    return base, dict(parse_qsl(parts.query))


def normalize(url: str, *, api: str = "") -> str:
    """The API's base URL for a pasted endpoint, or ValueError saying which URL pattern is expected.

    `url` has a scheme and a host already (the registry checked). A pasted operation URL (…/chat/completions)
    loses the operation; only Azure's ?api-version= may be kept as a query. `api` is "chat" or "embeddings"."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in OPERATION_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    query = parse_qsl(parts.query, keep_blank_values=True)
    base = parts._replace(path=path, query="", fragment="")
    provider = detect(base.geturl())
    problem = _problem(provider, parts.port, path, dict(query), api)
    if problem:
        raise ValueError(problem)
    if query and (provider is not AZURE or [k for k, _ in query] != ["api-version"]):
        raise ValueError("must be the API's base URL without a ?query (only Azure OpenAI's ?api-version= is kept).")
    if query and not _API_VERSION.fullmatch(query[0][1]):
        raise ValueError(f"has an api-version that is not a version, e.g. ?api-version={AZURE_API_VERSION}.")
    return base._replace(query=urlencode(query)).geturl()


def _problem(provider: Provider, port: int | None, path: str, query: dict, api: str) -> str:
    """What is wrong with this provider's URL, in words naming the expected pattern; "" when it fits."""
    if provider is AZURE:
        if AZURE_DEPLOYMENT.fullmatch(path):
            if "api-version" not in query:
                return (f"needs Azure's API version for a deployment URL: add ?api-version={AZURE_API_VERSION} "
                        f"(expected {AZURE_CLASSIC_EXAMPLE}).")
            return ""
        if path == AZURE_V1:
            return ""
        return f"is not an Azure OpenAI API URL: expected {AZURE_V1_EXAMPLE} or {AZURE_CLASSIC_EXAMPLE}."
    if provider is OPENAI and path != "/v1":
        return "for OpenAI must be https://api.openai.com/v1."
    if provider is VOYAGE:
        if api == "chat":
            return "is Voyage AI's, which serves embeddings only: use it for Embeddings, not for the LLM."
        if path != "/v1":
            return "for Voyage AI must be https://api.voyageai.com/v1."
    if provider is COHERE and path != "/compatibility/v1":
        return (f"for Cohere must be its OpenAI compatibility API, {COHERE_BASE}: Cohere's own /v1 and /v2 APIs "
                "are not OpenAI-compatible.")
    if provider is BEDROCK and path != "/openai/v1":
        return ("is Amazon Bedrock's own API, which is not OpenAI-compatible: put an OpenAI-compatible gateway in "
                "front of Bedrock (e.g. Bedrock Access Gateway or LiteLLM) and enter its URL, e.g. "
                "https://YOUR-GATEWAY/api/v1.")
    if provider is VERTEX and not re.fullmatch(r"/v1(beta1)?/projects/[^/]+/locations/[^/]+/endpoints/openapi", path):
        return (f"for Vertex AI must be its OpenAI-compatible URL, {VERTEX_EXAMPLE} — or, better, an "
                "OpenAI-compatible proxy in front of Vertex AI (its own keys expire within an hour).")
    if port == OLLAMA_PORT and path in OLLAMA_NATIVE:
        return "is Ollama's own API: its OpenAI-compatible base URL ends in /v1, e.g. http://HOST:11434/v1."
    return ""

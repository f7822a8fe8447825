"""What the OpenAI-compatible backends (LLM, embeddings) share over HTTP: reading a JSON answer, and the rules
that classify httpx's and openai's failures into the taxonomy (byoi.errors.classify dispatches to them).

Providers word their errors differently: OpenAI, Azure, Ollama and LocalAI send {"error": {"message",
"code"}}, vLLM the error object itself, Voyage AI {"detail": …}, Cohere {"message": …}. A missing model is
`model_not_found` whichever way it is said (Azure: DeploymentNotFound; LocalAI: HTTP 500 "could not load
model")."""

from __future__ import annotations

import httpcore
import httpx

from byoi import providers
from byoi.errors import BackendError, Where
from byoi.scrub import scrub

# How providers say the model is unknown (with "model" in the same message): OpenAI, Ollama, vLLM, Cohere,
# LocalAI ("could not load model", HTTP 500), Voyage AI ("is not supported", HTTP 400), Bedrock Access Gateway
# ("Unsupported model"), LiteLLM ("Invalid model name").
_MISSING_MODEL = ("not found", "does not exist", "could not load model", "is not supported", "unsupported model",
                  "invalid model name")


def json_body(http_response: httpx.Response, what: str):
    """The parsed JSON of an answer to `what` ("/models"…), or BackendError("protocol") saying what came instead."""
    content_type = http_response.headers.get("content-type", "")
    if "json" not in content_type:
        kind = "an HTML page" if "html" in content_type else f"'{content_type.split(';')[0] or 'no content type'}'"
        raise BackendError("protocol", f"The server answered {what} with {kind} instead of JSON.")
    try:
        return http_response.json()
    except ValueError:
        raise BackendError("protocol", f"The server's answer to {what} is not valid JSON.") from None


def httpx_rules(error: BaseException, where: Where) -> BackendError | None:
    if isinstance(error, httpx.ConnectTimeout | httpcore.ConnectTimeout):
        return BackendError("timeout", f"Connection{where.to} did not complete{where.connect_within}.")
    if isinstance(error, httpx.TimeoutException | httpcore.TimeoutException):
        return BackendError("timeout", f"The server{where.at} did not answer{where.within}.")
    if isinstance(error, httpx.RemoteProtocolError | httpcore.RemoteProtocolError | httpx.DecodingError):
        return BackendError("protocol", f"The server{where.at} sent an invalid HTTP answer.")
    if isinstance(error, httpx.UnsupportedProtocol):
        return BackendError("config", "The API endpoint must start with https:// (or http://).")
    return None


def openai_rules(error: BaseException, where: Where) -> BackendError | None:
    import openai

    if isinstance(error, openai.APITimeoutError):
        return None if error.__cause__ is not None else BackendError("timeout", f"The API did not answer{where.within}.")
    if isinstance(error, openai.APIConnectionError):
        return None  # the cause (socket, ssl…) says what happened
    if isinstance(error, openai.APIResponseValidationError):
        return BackendError("protocol", "The server's answer is not a valid OpenAI-compatible response.")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        code = _error_code(error)
        text = _error_message(error).lower()
        provider = providers.detect(str(where.setting("endpoint") or ""))
        if status in (401, 403):
            if where.settings is not None and not where.setting("api_key"):
                return BackendError("auth", f"The endpoint requires an API key (HTTP {status}): enter it in API Key.")
            return BackendError("auth", f"The API refused the key (HTTP {status}).")
        if code == "DeploymentNotFound":
            return BackendError("model_not_found", "Azure OpenAI has no deployment of this name (HTTP 404): the "
                                                   "deployment name in the URL, or the Model Name with the "
                                                   "/openai/v1 URL, must be one of the resource's deployments.")
        if code == "model_not_found" or (status in (400, 404, 500) and "model" in text
                                         and any(words in text for words in _MISSING_MODEL)):
            return BackendError("model_not_found", f"The endpoint does not serve this model (HTTP {status}).")
        if status == 404 and provider is providers.AZURE:
            return BackendError("protocol", "Azure OpenAI answered 404 Resource not found: check the URL, expected "
                                            f"{providers.AZURE_V1_EXAMPLE} or {providers.AZURE_CLASSIC_EXAMPLE}, "
                                            "and that the api-version exists.")
        if status == 404:
            return BackendError("protocol", "The API answered 404 Not Found: this URL is not an OpenAI-compatible "
                                            "API base.")
        if status == 429:
            return BackendError("unavailable", "The API is rate limiting or out of quota (HTTP 429).",
                                hint="Check the plan and quota of this API key, then try again.")
        if 300 <= status < 400:
            return BackendError("protocol", f"The endpoint answered with a redirect (HTTP {status}); WizChat does "
                                            "not follow redirects. Enter the final URL of the API.")
        if status >= 500:
            return BackendError("unavailable", f"The API failed with HTTP {status}.")
        detail = _error_message(error)
        return BackendError("protocol", f"The API rejected the request (HTTP {status})"
                                        + (f": {detail}" if detail else "."))
    return None


def _error_body(error) -> dict | None:
    """The `error` object of an OpenAI-style error answer (or the body itself), None when there is none."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
        if isinstance(inner, str):  # {"error": "message"} (some proxies)
            return {"message": inner}
    return None


def _error_code(error) -> str:
    body = _error_body(error)
    return str(body.get("code") or "") if body is not None else str(getattr(error, "code", "") or "")


def _error_message(error) -> str:
    body = _error_body(error)
    if body is None:
        return ""
    message = body.get("message") or body.get("detail") or ""
    if isinstance(message, list):  # a validation error list: [{"loc": …, "msg": …}]
        message = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in message)
    return scrub(str(message))[:200]

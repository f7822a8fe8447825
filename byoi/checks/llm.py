"""Test Connection for an OpenAI-compatible LLM: address allowed → TCP → TLS (a warning for http://) →
authentication (GET /models where offered) → operation (a real chat completion of a few tokens)."""

from __future__ import annotations

from byoi import netguard
from byoi.backends.base import BackendError
from byoi.checks import Context, Step
from byoi.checks.net import address_step, endpoint, open_socket, tcp_step, tls_handshake, unencrypted


def endpoint_steps(settings: dict, backend_class) -> list[Step]:
    """The steps every OpenAI-compatible endpoint shares, up to and including authentication."""
    def tls(ctx: Context) -> str:
        if settings_scheme(ctx.settings) != "https":
            return unencrypted("the endpoint is http://, so the API key, the prompts and the answers travel in "
                               "clear text. Use https:// if the server offers it.")
        context = netguard.ssl_context()
        sock = open_socket(ctx, endpoint)
        return tls_handshake(sock, endpoint(ctx)[0], context,
                             plain="Check the endpoint's scheme: http:// for a server without TLS.")

    def auth(ctx: Context) -> str:
        backend = backend_of(ctx, backend_class)
        models = backend.models()
        if models is None:
            return "The endpoint lists no models; the key is checked by the next step."
        accepted = "Key accepted" if ctx.settings.get("api_key") else "No key needed"
        model = (ctx.settings.get("model") or "").strip()
        if model in models:
            return f"{accepted}; the endpoint serves {model}."
        return f"{accepted}; the endpoint lists {len(models)} models."

    return [Step("address", address_step(endpoint)), Step("tcp", tcp_step(endpoint)), Step("tls", tls),
            Step("auth", auth)]


def settings_scheme(settings: dict) -> str:
    try:
        return netguard.split_endpoint(settings.get("endpoint") or "")[0]
    except BackendError:
        return ""


def backend_of(ctx: Context, backend_class):
    """One backend (and one HTTP client) for all steps of a check, closed at the end."""
    backend = ctx.state.get("backend")
    if backend is None:
        backend = ctx.state["backend"] = backend_class(ctx.settings)
        ctx.cleanups.append(backend.close)
    return backend


def steps(settings: dict) -> list[Step]:
    from byoi.backends.llm import OpenAICompatibleLLM

    def operation(ctx: Context) -> str:
        backend = backend_of(ctx, OpenAICompatibleLLM)
        answer = backend.chat([{"role": "user", "content": "Reply with the single word: OK"}], max_tokens=8,
                              temperature=0)
        answer = " ".join(answer.split())
        if not answer:
            return "The model answered (an empty completion)."
        return f"The model answered: \u201c{answer[:60]}{'…' if len(answer) > 60 else ''}\u201d"

    return [*endpoint_steps(settings, OpenAICompatibleLLM), Step("operation", operation)]

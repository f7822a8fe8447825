"""LLM backend: any OpenAI-compatible chat completions API (the platform's llama.cpp server, OpenAI, Azure
OpenAI, Ollama, vLLM, LocalAI, proxies for Bedrock and Vertex…). Default and custom use this one class.

What differs between providers is in byoi.providers: Azure OpenAI gets its key in the `api-key` header and
its `api-version` on every call; a server without a key gets no Authorization header at all.

Timeouts: connecting is bounded by the connect timeout; a non-streaming call (chat, models, embeddings)
finishes within the operation timeout in total (netguard.deadline); a stream fails when no data arrives for
the operation timeout. Every failure is a BackendError from the shared taxonomy, never a library exception."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import openai

from byoi import netguard, providers
from byoi.backends.base import LLM, BackendError
from byoi.backends.http import json_body
from byoi.errors import classify


def openai_client(backend, endpoint: str, api_key: str) -> openai.OpenAI:
    """An OpenAI client whose only way out is netguard's pinned httpx client; no retries (the caller
    decides), explicit timeouts. The endpoint's query (Azure's api-version) is sent with every call; a
    provider that wants its key in another header (Azure's `api-key`) gets it there."""
    base_url, query = providers.split(endpoint)
    provider = providers.detect(endpoint)
    guard = netguard.guarded(backend.settings)
    http = netguard.http_client(base_url, timeout_connect=backend.connect_timeout,
                                timeout_read=backend.operation_timeout, guard=guard)
    timeout = httpx.Timeout(connect=backend.connect_timeout, read=backend.operation_timeout,
                            write=backend.operation_timeout, pool=backend.operation_timeout)
    headers = {provider.key_header: api_key} if api_key and provider.key_header != "Authorization" else None
    # The client insists on a key; requests without a Bearer key drop the header again (auth_override).
    return openai.OpenAI(base_url=base_url, api_key=api_key or "none", http_client=http, max_retries=0,
                         timeout=timeout, default_headers=headers, default_query=query or None)


def endpoint_parts(settings: dict) -> tuple[str, str, int]:
    return netguard.split_endpoint(settings.get("endpoint") or "")


_client_lock = threading.Lock()


class OpenAIClientMixin:
    _client: openai.OpenAI | None = None

    @property
    def model(self) -> str:
        model = (self.settings.get("model") or "").strip()
        if not model:
            raise BackendError("config", "The Model Name is empty.")
        return model

    def _where(self) -> tuple[str | None, int | None]:
        try:
            _, host, port = endpoint_parts(self.settings)
        except BackendError:
            return None, None
        return host, port

    @property
    def provider(self) -> providers.Provider:
        return providers.detect(self.settings.get("endpoint") or "")

    def auth_override(self) -> dict:
        """Headers each request sets over the client's: no Authorization when there is no Bearer key (a server
        without a key; Azure, whose key goes in api-key)."""
        if self.settings.get("api_key") and self.provider.key_header == "Authorization":
            return {}
        return {"Authorization": openai.Omit()}

    def client(self) -> openai.OpenAI:
        """One client (and connection pool) per backend instance; instances are shared between threads."""
        if self._client is None:
            with _client_lock:
                if self._client is None:
                    self._client = openai_client(self, self.settings.get("endpoint") or "",
                                                 self.settings.get("api_key") or "")
        return self._client

    def classify(self, error: BaseException) -> BackendError:
        host, port = self._where()
        # The settings let the HTTP rules say what a provider's answer means (never quoting the key).
        return classify(error, host=host, port=port, timeout=self.operation_timeout,
                        connect_timeout=self.connect_timeout, settings=self.settings)

    def models(self) -> list[str] | None:
        """The model ids the endpoint lists, or None when it offers no /models (some proxies don't)."""
        try:
            with netguard.deadline(self.operation_timeout):
                response = self.client().models.with_raw_response.list(extra_headers=self.auth_override())
            payload = json_body(response.http_response, "/models")
        except openai.NotFoundError:
            return None
        except BackendError:
            raise
        except Exception as error:
            raise self.classify(error) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise BackendError("protocol", "The server's /models answer is not an OpenAI-compatible model list.")
        return [str(item.get("id")) for item in data if isinstance(item, dict) and item.get("id")]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class OpenAICompatibleLLM(OpenAIClientMixin, LLM):

    # OpenAI's reasoning models reject `max_tokens` and want `max_completion_tokens`; older servers know only
    # the first. The first refusal switches this backend to the other name.
    _length_param = "max_tokens"
    # Streams ask for the server's token counts (`stream_options`); a server that refuses the parameter gets
    # streams without it from then on, and the counts are estimated.
    _usage_in_stream = True

    def _request(self, messages, max_tokens, temperature, **extra) -> dict:
        request = {"model": self.model, "messages": messages, self._length_param: max_tokens,
                   "temperature": temperature, **extra}
        if extra.get("stream") and self._usage_in_stream:
            request["stream_options"] = {"include_usage": True}
        return request

    def _create(self, raw: bool, **request):
        create = (self.client().chat.completions.with_raw_response.create if raw
                  else self.client().chat.completions.create)
        headers = self.auth_override()
        for _ in range(3):  # at most one retry per parameter a server may refuse
            try:
                return create(**request, extra_headers=headers)
            except openai.BadRequestError as error:
                body = str(error.body or error.message or "")
                if self._length_param == "max_tokens" and "max_completion_tokens" in body:
                    request["max_completion_tokens"] = request.pop("max_tokens")
                    self._length_param = "max_completion_tokens"
                elif "stream_options" in request and "stream_options" in body:
                    request.pop("stream_options")
                    self._usage_in_stream = False
                else:
                    raise
        return create(**request, extra_headers=headers)

    def chat(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.2) -> str:
        try:
            with netguard.deadline(self.operation_timeout):
                response = self._create(True, **self._request(messages, max_tokens, temperature))
            payload = json_body(response.http_response, "/chat/completions")
        except BackendError:
            raise
        except Exception as error:
            raise self.classify(error) from None
        try:
            content = payload["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError("protocol", "The server's chat completion has no choices: it is not an "
                                           "OpenAI-compatible answer.") from None
        return content or ""

    def stream(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.2,
               usage: dict | None = None) -> Iterator[str]:
        """Yield the answer's text as it arrives; servers that report token counts in the stream (without being
        asked: `stream_options` is not sent, some servers refuse it) fill `usage`."""
        try:
            stream = self._create(False, **self._request(messages, max_tokens, temperature, stream=True))
        except BackendError:
            raise
        except Exception as error:
            raise self.classify(error) from None
        content_type = stream.response.headers.get("content-type", "")
        if "event-stream" not in content_type:
            stream.close()
            kind = "an HTML page" if "html" in content_type else f"'{content_type.split(';')[0] or 'nothing'}'"
            raise BackendError("protocol", f"The server answered a streaming chat completion with {kind} "
                                           "instead of server-sent events.")
        try:
            for chunk in stream:
                choices = getattr(chunk, "choices", None)
                if choices is None:
                    raise BackendError("protocol", "The server's stream has no choices: it is not an "
                                                   "OpenAI-compatible answer.")
                reported = getattr(chunk, "usage", None)
                if usage is not None and reported is not None:
                    usage.update({"prompt_tokens": getattr(reported, "prompt_tokens", None),
                                  "completion_tokens": getattr(reported, "completion_tokens", None)})
                if choices and choices[0].delta is not None and choices[0].delta.content:
                    yield choices[0].delta.content
        except BackendError:
            raise
        except Exception as error:
            raise self.classify(error) from None
        finally:
            stream.close()

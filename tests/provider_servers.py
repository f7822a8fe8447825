"""Real HTTP servers that answer like the providers the spec names ("Compatible with"), for tests of the LLM
and embeddings backends and their Test Connection. We cannot reach the providers from here, so each profile
reproduces what their documentation and SDKs show: the URL shape, the header that carries the key, the
parameters accepted, and the error bodies.

- azure: /openai/deployments/NAME/{chat/completions,embeddings}?api-version=… with the `api-key` header (the
  key is checked first, then the route: Azure answers 401 before 404); 404 {"error": {"code": "404",
  "message": "Resource not found"}} for a missing api-version or an unknown path, DeploymentNotFound for an
  unknown deployment; /openai/v1/… with the deployment name as `model`, `api-key` or `Authorization: Bearer`.
- voyage: /v1/embeddings only, Bearer; refuses `encoding_format` other than base64, knows `output_dimension`
  (voyage-3.5: 256/512/1024/2048) and refuses `dimensions`; errors {"detail": "…"}.
- cohere: the compatibility API under /compatibility/v1, Bearer; refuses `dimensions`; errors {"message": …}.
- ollama: /v1, no key (the header is ignored); "model not found, try pulling it first".
- vllm: /v1, a key only when started with --api-key (then {"error": "Unauthorized"}); errors are the error
  object itself; `dimensions` refused for models without matryoshka support.
- localai: /v1, a key only when API_KEY is set; an unknown model is HTTP 500 "could not load model".
- bedrock-gateway: Bedrock Access Gateway's /api/v1 with Bedrock model ids, Bearer; {"detail": …} errors.
- litellm-vertex: a LiteLLM proxy in front of Vertex AI: /v1 with Gemini and text-embedding-005, Bearer;
  LiteLLM's error objects ("Invalid model name passed in model=…").

`provider_dns` makes a provider's host name resolve to 127.0.0.1 (a test's DNS), so that the backends
recognise the provider by its real host while talking to the local server."""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.openai_server import Recorded, fake_embedding

__all__ = ["provider_dns", "provider_server"]  # the fixtures, for `from tests.provider_servers import *`
AZURE_API_VERSIONS = {"2024-06-01", "2024-10-21", "2025-01-01-preview"}


@dataclass(frozen=True)
class Profile:
    base: str  # the path every route starts with
    chat: dict  # chat model (or Azure deployment) names
    embeddings: dict  # embedding model → native size
    key_required: bool = True
    models_route: bool = True
    flexible: dict = field(default_factory=dict)  # model → dimension values its dimension parameter accepts
    dimension_param: str = "dimensions"


PROFILES = {
    "azure": Profile("/openai", chat={"gpt-4o-prod": "gpt-4o"},
                     embeddings={"embed-large": 3072, "embed-ada": 1536},
                     flexible={"embed-large": range(1, 3073)}),
    "voyage": Profile("/v1", chat={}, embeddings={"voyage-3.5": 1024, "voyage-3": 1024, "voyage-3-lite": 512},
                      models_route=False, flexible={"voyage-3.5": (256, 512, 1024, 2048)},
                      dimension_param="output_dimension"),
    "cohere": Profile("/compatibility/v1", chat={"command-a-03-2025": ""},
                      embeddings={"embed-v4.0": 1536, "embed-english-v3.0": 1024}, models_route=False),
    "ollama": Profile("/v1", chat={"llama3.1:8b": ""}, embeddings={"nomic-embed-text": 768}, key_required=False),
    "vllm": Profile("/v1", chat={"meta-llama/Llama-3.1-8B-Instruct": ""},
                    embeddings={"BAAI/bge-m3": 1024, "jinaai/jina-embeddings-v3": 1024}, key_required=False,
                    flexible={"jinaai/jina-embeddings-v3": range(32, 1025)}),
    "localai": Profile("/v1", chat={"phi-2": ""}, embeddings={"bert-embeddings": 384}, key_required=False),
    "bedrock-gateway": Profile("/api/v1", chat={"anthropic.claude-3-5-sonnet-20240620-v1:0": ""},
                               embeddings={"cohere.embed-multilingual-v3": 1024}),
    "litellm-vertex": Profile("/v1", chat={"gemini-2.0-flash": ""}, embeddings={"text-embedding-005": 768},
                              flexible={"text-embedding-005": range(1, 769)}),
}


@dataclass
class ProviderServer:
    provider: str
    api_key: str = "pk-test-7c1d2e3f4a5b6c7d"
    require_key: bool | None = None  # vLLM/LocalAI: True as if started with an API key
    reply: str = "Hello from the provider."
    requests: list = field(default_factory=list)
    port: int = 0
    url_host: str = "127.0.0.1"
    _httpd: ThreadingHTTPServer | None = None

    @property
    def profile(self) -> Profile:
        return PROFILES[self.provider]

    @property
    def key_required(self) -> bool:
        return self.profile.key_required if self.require_key is None else self.require_key

    def url(self, path: str = "", host: str | None = None) -> str:
        return f"http://{host or self.url_host}:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return self.url(self.profile.base)

    def calls(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.split("?", 1)[0].endswith(suffix)]

    def start(self) -> ProviderServer:
        server = self

        class Handler(_Handler):
            state = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name=f"provider-{self.provider}-{self.port}").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: ProviderServer
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def _send(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.state.requests.append(Recorded(method, self.path, dict(self.headers.items()), body))
        parts = urlsplit(self.path)
        handler = getattr(self, "_" + self.state.provider.replace("-", "_"))
        handler(method, parts.path.rstrip("/"), parse_qs(parts.query), body or {})

    # --- shared pieces ------------------------------------------------------------------------------------
    def _bearer_ok(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.state.api_key}"

    def _route(self, path: str) -> str | None:
        base = self.state.profile.base
        return path[len(base):] if path.startswith(base) else None

    def _models(self) -> dict:
        names = [*self.state.profile.chat, *self.state.profile.embeddings]
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "test"} for n in names]}

    def _completion(self, model: str) -> dict:
        return {"id": "chatcmpl-p1", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.state.reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}

    def _vectors(self, model: str, texts, size: int, encoding: str | None) -> dict:
        texts = [texts] if isinstance(texts, str) else list(texts)
        data = []
        for i, text in enumerate(texts):
            vector = fake_embedding(text, size)
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return {"object": "list", "model": model, "data": data,
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}}

    def _size(self, model: str, body: dict, param: str) -> int | str:
        """The vector size for this request, or an error message naming the refused parameter."""
        profile = self.state.profile
        size = profile.embeddings[model]
        if body.get(param) is not None:
            allowed = profile.flexible.get(model)
            if not allowed or int(body[param]) not in allowed:
                return f"Model {model} does not support the {param} parameter with value {body[param]}."
            size = int(body[param])
        return size

    # --- Azure OpenAI -------------------------------------------------------------------------------------
    def _azure(self, method, path, query, body):
        not_found = {"error": {"code": "404", "message": "Resource not found"}}
        key = self.headers.get("api-key")
        v1 = path.startswith("/openai/v1")
        if key != self.state.api_key and not (v1 and self._bearer_ok()):
            self._send(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key or "
                                       "wrong API endpoint. Make sure to provide a valid key for an active "
                                       "subscription and use a correct regional API endpoint for your resource."}})
            return
        if v1:
            operation, deployment = path[len("/openai/v1"):], body.get("model", "")
        else:
            match = re.fullmatch(r"/openai/deployments/([^/]+)(/.*)", path)
            version = (query.get("api-version") or [""])[0]
            if match is None or not version:
                self._send(404, not_found)
                return
            if version not in AZURE_API_VERSIONS:
                self._send(400, {"error": {"code": "BadRequest", "message": "API version not supported"}})
                return
            deployment, operation = match.groups()
        if method == "GET" and operation == "/models" and v1:
            self._send(200, self._models())
        elif method == "POST" and operation in ("/chat/completions", "/embeddings"):
            profile = self.state.profile
            if deployment not in profile.chat and deployment not in profile.embeddings:
                self._send(404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this "
                                           "resource does not exist. If you created the deployment within the last "
                                           "5 minutes, please wait a moment and try again."}})
            elif operation == "/chat/completions":
                self._send(200, self._completion(profile.chat.get(deployment, deployment)))
            else:
                size = self._size(deployment, body, "dimensions")
                if isinstance(size, str):
                    self._send(400, {"error": {"code": "BadRequest", "message": size}})
                else:
                    self._send(200, self._vectors(deployment, body["input"], size, body.get("encoding_format")))
        else:
            self._send(404, not_found)

    # --- Voyage AI ----------------------------------------------------------------------------------------
    def _voyage(self, method, path, query, body):
        if not self._bearer_ok():
            self._send(401, {"detail": "Provided API key is invalid."})
            return
        if (method, self._route(path)) != ("POST", "/embeddings"):
            self._send(404, {"detail": "Not Found"})
            return
        model = body.get("model", "")
        if model not in self.state.profile.embeddings:
            self._send(400, {"detail": f"Model {model} is not supported. Supported models are "
                                       f"{sorted(self.state.profile.embeddings)}."})
            return
        if body.get("encoding_format") not in (None, "base64"):
            self._send(400, {"detail": f"Value '{body['encoding_format']}' supplied for argument 'encoding_format' "
                                       "is not valid -- accepted values: [None, 'base64']."})
            return
        if "dimensions" in body:
            self._send(400, {"detail": "Unexpected argument 'dimensions'. Did you mean 'output_dimension'?"})
            return
        size = self._size(model, body, "output_dimension")
        if isinstance(size, str):
            self._send(400, {"detail": size})
            return
        self._send(200, self._vectors(model, body.get("input", []), size, body.get("encoding_format")))

    # --- Cohere (compatibility API) -----------------------------------------------------------------------
    def _cohere(self, method, path, query, body):
        if not self._bearer_ok():
            self._send(401, {"id": "e1", "message": "invalid api token"})
            return
        route = self._route(path)
        model = body.get("model", "")
        if method == "POST" and route in ("/chat/completions", "/embeddings"):
            names = self.state.profile.chat if route == "/chat/completions" else self.state.profile.embeddings
            if model not in names:
                self._send(404, {"id": "e2", "message": f"model '{model}' not found, make sure the correct model ID "
                                                        "was used and that you have access to the model."})
            elif route == "/chat/completions":
                self._send(200, self._completion(model))
            elif "dimensions" in body:
                self._send(400, {"id": "e3", "message": "invalid request: dimensions is not a supported parameter."})
            else:
                self._send(200, self._vectors(model, body.get("input", []), names[model], body.get("encoding_format")))
        else:
            self._send(404, {"id": "e4", "message": f"route {path} not found"})

    # --- Ollama, vLLM, LocalAI and the proxies: OpenAI's routes under their base ---------------------------
    def _openai_like(self, method, path, body, *, unauthorized, missing, refuse_dimensions):
        if self.state.key_required and not self._bearer_ok():
            status, payload = unauthorized
            self._send(status, payload)
            return
        route, profile = self._route(path), self.state.profile
        model = body.get("model", "")
        if method == "GET" and route == "/models" and profile.models_route:
            self._send(200, self._models())
        elif method == "POST" and route == "/chat/completions":
            if model in profile.chat:
                self._send(200, self._completion(model))
            else:
                self._send(*missing(model))
        elif method == "POST" and route == "/embeddings":
            if model not in profile.embeddings:
                self._send(*missing(model))
                return
            size = self._size(model, body, "dimensions")
            if isinstance(size, str):
                self._send(400, refuse_dimensions(model, size))
            else:
                self._send(200, self._vectors(model, body.get("input", []), size, body.get("encoding_format")))
        else:
            self._send(404, {"error": {"message": f"Unknown route {method} {path}", "code": 404}})

    def _ollama(self, method, path, query, body):
        self._openai_like(
            method, path, body, unauthorized=(401, {}),
            missing=lambda m: (404, {"error": {"message": f'model "{m}" not found, try pulling it first',
                                               "type": "api_error", "param": None, "code": None}}),
            refuse_dimensions=lambda m, why: {"error": {"message": "this model does not support dimensions",
                                                        "type": "invalid_request_error"}})

    def _vllm(self, method, path, query, body):
        self._openai_like(
            method, path, body, unauthorized=(401, {"error": "Unauthorized"}),
            missing=lambda m: (404, {"object": "error", "message": f"The model `{m}` does not exist.",
                                     "type": "NotFoundError", "param": None, "code": 404}),
            refuse_dimensions=lambda m, why: {"object": "error", "message": f'Model "{m}" does not support matryoshka '
                                              "representation, changing output dimensions will lead to poor results.",
                                              "type": "BadRequestError", "param": None, "code": 400})

    def _localai(self, method, path, query, body):
        self._openai_like(
            method, path, body,
            unauthorized=(401, {"error": {"code": 401, "message": "An authentication key is required",
                                          "type": "invalid_request_error"}}),
            missing=lambda m: (500, {"error": {"code": 500, "message": "could not load model: rpc error: code = "
                                               "Unknown desc = failed to load model with internal loader", "type": ""}}),
            refuse_dimensions=lambda m, why: {"error": {"code": 400, "message": why, "type": ""}})

    def _bedrock_gateway(self, method, path, query, body):
        self._openai_like(
            method, path, body, unauthorized=(401, {"detail": "Invalid API Key"}),
            missing=lambda m: (400, {"detail": f"Unsupported model {m}, please use models API to get a list of "
                                               "supported models"}),
            refuse_dimensions=lambda m, why: {"detail": why})

    def _litellm_vertex(self, method, path, query, body):
        self._openai_like(
            method, path, body,
            unauthorized=(401, {"error": {"message": "Authentication Error, Invalid proxy server token passed.",
                                          "type": "auth_error", "param": "None", "code": "401"}}),
            missing=lambda m: (400, {"error": {"message": f"/chat/completions: Invalid model name passed in model={m}. "
                                               "Call `/v1/models` to view available models for your key.",
                                               "type": "None", "param": "None", "code": "400"}}),
            refuse_dimensions=lambda m, why: {"error": {"message": why, "type": "None", "code": "400"}})


@pytest.fixture
def provider_server():
    """provider_server("azure") → a started ProviderServer, stopped after the test."""
    started = []

    def make(provider: str, **kwargs) -> ProviderServer:
        server = ProviderServer(provider, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def provider_dns(monkeypatch):
    """provider_dns("api.voyageai.com", …): these names resolve to 127.0.0.1 for this test (the test's DNS)."""
    names: set[str] = set()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.lower() in names:
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def add(*hosts: str) -> None:
        names.update(h.lower() for h in hosts)

    return add

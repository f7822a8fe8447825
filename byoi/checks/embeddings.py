"""Test Connection for an OpenAI-compatible embeddings endpoint: address allowed → TCP → TLS (https only)
→ authentication (GET /models where offered) → operation (a real vector whose length must equal Dimensions)."""

from __future__ import annotations

from byoi.checks import Context, Step
from byoi.checks.llm import backend_of, endpoint_steps


def steps(settings: dict) -> list[Step]:
    from byoi.backends.embeddings import OpenAICompatibleEmbeddings

    def operation(ctx: Context) -> str:
        backend = backend_of(ctx, OpenAICompatibleEmbeddings)
        vectors = backend.embed(["WizChat connection test: is this vector the right size?"])
        return f"Got a vector of {len(vectors[0])} dimensions, as configured."

    return [*endpoint_steps(settings, OpenAICompatibleEmbeddings), Step("operation", operation)]

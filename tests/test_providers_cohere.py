"""Cohere through its OpenAI compatibility API, against a server that answers like it (tests/provider_servers.py):
https://api.cohere.ai/compatibility/v1, Bearer key, {"message": …} errors, no dimensions parameter."""

import pytest

from byoi.backends.base import BackendError
from byoi.backends.embeddings import OpenAICompatibleEmbeddings
from byoi.backends.llm import OpenAICompatibleLLM
from byoi.checks import check_run
from byoi.registry import KINDS
from tests.provider_servers import *  # noqa: F403 - the provider_server and provider_dns fixtures

HOST = "api.cohere.ai"


@pytest.fixture
def cohere(provider_server, provider_dns):
    provider_dns(HOST)
    return provider_server("cohere")


def base(server) -> str:
    return server.url("/compatibility/v1", host=HOST)


def test_it_passes_test_connection_for_chat_and_embeddings(cohere):
    llm = check_run("llm", {"endpoint": base(cohere), "api_key": cohere.api_key, "model": "command-a-03-2025"})
    embeddings = check_run("embeddings", {"endpoint": base(cohere), "api_key": cohere.api_key,
                                          "model": "embed-v4.0", "dimensions": 1536})

    assert [r.status for r in llm + embeddings if r.status not in ("ok", "warning")] == []


def test_it_sends_no_dimensions_parameter(cohere):
    OpenAICompatibleEmbeddings({"endpoint": base(cohere), "api_key": cohere.api_key, "model": "embed-v4.0",
                                "dimensions": 1536}).embed(["a"])

    assert cohere.calls("/embeddings")[0].body == {"model": "embed-v4.0", "input": ["a"], "encoding_format": "float"}


def test_it_names_both_sizes_when_dimensions_do_not_match_the_model(cohere):
    with pytest.raises(BackendError) as caught:
        OpenAICompatibleEmbeddings({"endpoint": base(cohere), "api_key": cohere.api_key, "model": "embed-v4.0",
                                    "dimensions": 1024}).embed(["a"])

    assert caught.value.code == "dimension_mismatch"
    assert "1536" in caught.value.message and "1024" in caught.value.message


def test_it_reports_a_wrong_key_as_auth(cohere):
    llm = OpenAICompatibleLLM({"endpoint": base(cohere), "api_key": "co-wrong-00000000", "model": "command-a-03-2025"})

    with pytest.raises(BackendError) as caught:
        llm.chat([{"role": "user", "content": "Hi"}])

    assert caught.value.code == "auth"


def test_it_reports_an_unknown_model_as_model_not_found(cohere):
    llm = OpenAICompatibleLLM({"endpoint": base(cohere), "api_key": cohere.api_key, "model": "command-z"})

    with pytest.raises(BackendError) as caught:
        llm.chat([{"role": "user", "content": "Hi"}])

    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("native", ["https://api.cohere.com/v1", "https://api.cohere.ai/v2", "https://api.cohere.com"])
def test_it_points_coheres_own_apis_to_the_compatibility_url(native):
    with pytest.raises(ValueError, match="https://api.cohere.ai/compatibility/v1"):
        KINDS["embeddings"].field("endpoint").coerce(native)


def test_it_accepts_the_compatibility_url():
    assert KINDS["embeddings"].field("endpoint").coerce("https://api.cohere.ai/compatibility/v1/") == \
        "https://api.cohere.ai/compatibility/v1"

"""AWS Bedrock and Google Vertex AI through OpenAI-compatible proxies (the spec's "via proxy"), against
servers shaped like Bedrock Access Gateway (/api/v1, Bedrock model ids) and a LiteLLM proxy in front of
Vertex AI (tests/provider_servers.py); and the URLs of their own APIs, which are refused or checked."""

import pytest

from byoi.backends.base import BackendError
from byoi.backends.embeddings import OpenAICompatibleEmbeddings
from byoi.backends.llm import OpenAICompatibleLLM
from byoi.checks import check_run
from byoi.registry import KINDS
from tests.provider_servers import *  # noqa: F403 - the provider_server and provider_dns fixtures

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def endpoint(url: str) -> str:
    return KINDS["llm"].field("endpoint").coerce(url)


def test_it_passes_test_connection_through_a_bedrock_gateway(provider_server):
    gateway = provider_server("bedrock-gateway")

    llm = check_run("llm", {"endpoint": gateway.base_url, "api_key": gateway.api_key, "model": CLAUDE})
    embeddings = check_run("embeddings", {"endpoint": gateway.base_url, "api_key": gateway.api_key,
                                          "model": "cohere.embed-multilingual-v3", "dimensions": 1024})

    assert next(r for r in llm if r.name == "auth").message == f"Key accepted; the endpoint serves {CLAUDE}."
    assert [r.status for r in llm + embeddings if r.status not in ("ok", "warning")] == []


def test_it_sends_the_bedrock_model_id_through_the_gateway(provider_server):
    gateway = provider_server("bedrock-gateway")

    OpenAICompatibleLLM({"endpoint": gateway.base_url, "api_key": gateway.api_key, "model": CLAUDE}).chat(
        [{"role": "user", "content": "Hi"}])

    call = gateway.calls("/chat/completions")[0]
    assert (call.path, call.body["model"]) == ("/api/v1/chat/completions", CLAUDE)


def test_it_reports_a_model_the_gateway_does_not_support(provider_server):
    gateway = provider_server("bedrock-gateway")

    with pytest.raises(BackendError) as caught:
        OpenAICompatibleLLM({"endpoint": gateway.base_url, "api_key": gateway.api_key,
                             "model": "amazon.titan-nope"}).chat([{"role": "user", "content": "Hi"}])

    assert caught.value.code == "model_not_found"


def test_it_reports_a_wrong_gateway_key_as_auth(provider_server):
    gateway = provider_server("bedrock-gateway")

    results = check_run("llm", {"endpoint": gateway.base_url, "api_key": "bag-wrong-000000", "model": CLAUDE})

    assert next(r for r in results if r.status == "failed").code == "auth"


def test_it_refuses_bedrocks_own_api_naming_a_gateway():
    with pytest.raises(ValueError, match="gateway"):
        endpoint(f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{CLAUDE}/converse")


def test_it_accepts_bedrocks_openai_compatible_url():
    assert endpoint("https://bedrock-runtime.us-west-2.amazonaws.com/openai/v1") == \
        "https://bedrock-runtime.us-west-2.amazonaws.com/openai/v1"


def test_it_passes_test_connection_through_a_litellm_proxy_for_vertex(provider_server):
    proxy = provider_server("litellm-vertex")

    llm = check_run("llm", {"endpoint": proxy.base_url, "api_key": proxy.api_key, "model": "gemini-2.0-flash"})
    vectors = OpenAICompatibleEmbeddings({"endpoint": proxy.base_url, "api_key": proxy.api_key,
                                          "model": "text-embedding-005", "dimensions": 768}).embed(["a"])

    assert [r.status for r in llm if r.status not in ("ok", "warning")] == []
    assert len(vectors[0]) == 768


def test_it_reports_litellms_invalid_model_name_as_model_not_found(provider_server):
    proxy = provider_server("litellm-vertex")

    with pytest.raises(BackendError) as caught:
        OpenAICompatibleLLM({"endpoint": proxy.base_url, "api_key": proxy.api_key, "model": "gemini-9"}).chat(
            [{"role": "user", "content": "Hi"}])

    assert caught.value.code == "model_not_found"


def test_it_accepts_vertexs_openai_compatible_url():
    url = "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/endpoints/openapi"

    assert endpoint(url) == url


def test_it_says_which_vertex_url_is_expected_and_recommends_a_proxy():
    with pytest.raises(ValueError) as caught:
        endpoint("https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4")

    assert "/endpoints/openapi" in str(caught.value) and "proxy" in str(caught.value)

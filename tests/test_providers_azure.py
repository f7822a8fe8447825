"""Azure OpenAI, LLM and embeddings, against a server that answers like Azure (tests/provider_servers.py):
the deployment URL with ?api-version= and the newer /openai/v1 base, the key in the `api-key` header."""

import pytest

from byoi import services
from byoi.backends.base import BackendError
from byoi.backends.embeddings import OpenAICompatibleEmbeddings
from byoi.backends.llm import OpenAICompatibleLLM
from byoi.checks import check_run
from byoi.envvars import env_to_settings, settings_to_env
from byoi.registry import KINDS
from tests.provider_servers import *  # noqa: F403 - the provider_server and provider_dns fixtures

HELLO = [{"role": "user", "content": "Hello?"}]
AZURE_HOST = "wizres.openai.azure.com"


@pytest.fixture
def azure(provider_server):
    return provider_server("azure")


def endpoint(url: str, kind: str = "llm") -> str:
    """The endpoint as the form stores it (the registry's check and normalisation)."""
    return KINDS[kind].field("endpoint").coerce(url)


def deployment(server, name: str, version: str = "2024-10-21") -> str:
    return endpoint(server.url(f"/openai/deployments/{name}?api-version={version}"))


def test_it_chats_through_a_deployment_url_with_the_key_in_the_api_key_header(azure):
    settings = {"endpoint": deployment(azure, "gpt-4o-prod"), "api_key": azure.api_key, "model": "gpt-4o"}

    answer = OpenAICompatibleLLM(settings).chat(HELLO)

    call = azure.calls("/chat/completions")[0]
    assert answer == azure.reply
    assert call.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert (call.headers.get("api-key"), call.headers.get("Authorization")) == (azure.api_key, None)


def test_it_embeds_through_a_deployment_url_with_the_dimensions_asked_for(azure):
    settings = {"endpoint": deployment(azure, "embed-large"), "api_key": azure.api_key, "model": "embed-large",
                "dimensions": 1024}

    vectors = OpenAICompatibleEmbeddings(settings).embed(["a", "b"])

    body = azure.calls("/embeddings")[0].body
    assert [len(v) for v in vectors] == [1024, 1024]
    assert (body["dimensions"], body["encoding_format"]) == (1024, "float")


def test_it_asks_a_deployment_that_refuses_dimensions_again_without_them(azure):
    settings = {"endpoint": deployment(azure, "embed-ada"), "api_key": azure.api_key, "model": "embed-ada",
                "dimensions": 1536}
    backend = OpenAICompatibleEmbeddings(settings)

    backend.embed(["a"])
    backend.embed(["b"])

    assert ["dimensions" in c.body for c in azure.calls("/embeddings")] == [True, False, False]


def test_it_passes_test_connection_through_deployment_urls(azure):
    llm = check_run("llm", {"endpoint": deployment(azure, "gpt-4o-prod"), "api_key": azure.api_key,
                            "model": "gpt-4o"})
    embeddings = check_run("embeddings", {"endpoint": deployment(azure, "embed-large"), "api_key": azure.api_key,
                                          "model": "embed-large", "dimensions": 3072})

    assert [r.status for r in llm if r.status not in ("ok", "warning")] == []
    assert [r.status for r in embeddings if r.status not in ("ok", "warning")] == []


def test_it_reports_a_wrong_key_at_the_authentication_step(azure):
    results = check_run("llm", {"endpoint": deployment(azure, "gpt-4o-prod"), "api_key": "wrong-key-123456",
                                "model": "gpt-4o"})

    failed = next(r for r in results if r.status == "failed")
    assert (failed.name, failed.code) == ("auth", "auth")


def test_it_says_a_deployment_does_not_exist(azure):
    llm = OpenAICompatibleLLM({"endpoint": deployment(azure, "gpt-5-nowhere"), "api_key": azure.api_key,
                               "model": "gpt-5"})

    with pytest.raises(BackendError) as caught:
        llm.chat(HELLO)

    assert caught.value.code == "model_not_found"
    assert "deployment" in caught.value.message


def test_it_reports_an_api_version_azure_does_not_know(azure):
    llm = OpenAICompatibleLLM({"endpoint": deployment(azure, "gpt-4o-prod", "1999-01-01"),
                               "api_key": azure.api_key, "model": "gpt-4o"})

    with pytest.raises(BackendError) as caught:
        llm.chat(HELLO)

    assert (caught.value.code, "API version not supported" in caught.value.message) == ("protocol", True)


def test_it_uses_the_v1_base_of_an_azure_host_with_the_api_key_header(azure, provider_dns):
    provider_dns(AZURE_HOST)
    settings = {"endpoint": endpoint(azure.url("/openai/v1", host=AZURE_HOST)), "api_key": azure.api_key,
                "model": "gpt-4o-prod"}

    results = check_run("llm", settings)

    call = azure.calls("/chat/completions")[0]
    assert next(r for r in results if r.name == "auth").message == "Key accepted; the endpoint serves gpt-4o-prod."
    assert (call.path, call.headers.get("api-key"), call.headers.get("Authorization")) == \
        ("/openai/v1/chat/completions", azure.api_key, None)


def test_it_keeps_the_api_version_of_a_pasted_target_uri():
    pasted = "https://wizres.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"

    assert endpoint(pasted) == "https://wizres.openai.azure.com/openai/deployments/gpt-4o-prod?api-version=2024-10-21"


def test_it_says_which_url_is_expected_when_the_api_version_is_missing():
    with pytest.raises(ValueError, match=r"\?api-version=2024-10-21") as caught:
        endpoint("https://wizres.openai.azure.com/openai/deployments/gpt-4o-prod")

    assert "RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT" in str(caught.value)


def test_it_names_both_azure_url_patterns_for_another_path_on_an_azure_host():
    with pytest.raises(ValueError) as caught:
        endpoint("https://wizres.openai.azure.com/v1")

    assert "/openai/v1" in str(caught.value) and "/openai/deployments/DEPLOYMENT?api-version=" in str(caught.value)


def test_it_shows_the_expected_pattern_as_the_endpoint_fields_error(db):
    with pytest.raises(services.ComponentInvalid) as caught:
        services.component_validate("llm", {"endpoint": "https://wizres.openai.azure.com/openai/deployments/x",
                                            "model": "gpt-4o"}, {"api_key": "k"}, None)

    assert "api-version" in caught.value.errors["endpoint"]


def test_it_refuses_any_other_query_in_an_endpoint():
    with pytest.raises(ValueError, match="only Azure OpenAI's"):
        endpoint("https://api.example.com/v1?key=abc")


def test_it_carries_the_api_version_through_the_custom_variables():
    settings = {"endpoint": "https://wizres.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
                "api_key": "k", "model": "gpt-4o"}

    assert env_to_settings(settings_to_env("llm", settings))["llm"] == settings

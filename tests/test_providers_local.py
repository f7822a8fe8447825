"""Ollama, vLLM and LocalAI against servers that answer like them (tests/provider_servers.py): they run
without a key (API Key is optional), and each says "unknown model" its own way."""

import pytest

from byoi import services
from byoi.backends.base import BackendError
from byoi.backends.embeddings import OpenAICompatibleEmbeddings
from byoi.backends.llm import OpenAICompatibleLLM
from byoi.checks import check_run
from byoi.registry import KINDS
from tests.provider_servers import *  # noqa: F403 - the provider_server and provider_dns fixtures

HELLO = [{"role": "user", "content": "Hello?"}]


def test_it_saves_an_llm_without_an_api_key(chatbot):
    component = services.component_save(chatbot, "llm", values={"endpoint": "https://ollama.example.com/v1",
                                                                 "model": "llama3.1:8b"}, secrets={})

    assert component.secrets == {}


def test_it_saves_embeddings_without_an_api_key(chatbot):
    component = services.component_save(chatbot, "embeddings", values={"endpoint": "https://ollama.example.com/v1",
                                                                        "model": "nomic-embed-text",
                                                                        "dimensions": 768}, secrets={})

    assert component.secrets == {}


def test_it_passes_test_connection_against_ollama_without_a_key(provider_server):
    ollama = provider_server("ollama")

    results = check_run("llm", {"endpoint": ollama.base_url, "model": "llama3.1:8b"})

    assert [(r.name, r.status) for r in results][3:] == [("auth", "ok"), ("operation", "ok")]
    assert next(r for r in results if r.name == "auth").message.startswith("No key needed")


def test_it_sends_no_authorization_header_without_a_key(provider_server):
    ollama = provider_server("ollama")

    OpenAICompatibleLLM({"endpoint": ollama.base_url, "model": "llama3.1:8b"}).chat(HELLO)
    OpenAICompatibleEmbeddings({"endpoint": ollama.base_url, "model": "nomic-embed-text", "dimensions": 768}
                               ).embed(["a"])

    assert [r.headers.get("Authorization") for r in ollama.requests] == [None, None]


def test_it_reports_a_model_ollama_has_not_pulled(provider_server):
    ollama = provider_server("ollama")

    with pytest.raises(BackendError) as caught:
        OpenAICompatibleLLM({"endpoint": ollama.base_url, "model": "mistral"}).chat(HELLO)

    assert caught.value.code == "model_not_found"


def test_it_points_ollamas_own_api_to_its_v1_url():
    with pytest.raises(ValueError, match="/v1"):
        KINDS["llm"].field("endpoint").coerce("http://gpu-box.example.com:11434/api/chat")


def test_it_works_with_vllm_without_a_key(provider_server):
    vllm = provider_server("vllm")

    answer = OpenAICompatibleLLM({"endpoint": vllm.base_url, "model": "meta-llama/Llama-3.1-8B-Instruct"}).chat(HELLO)

    assert answer == vllm.reply


def test_it_says_a_key_is_needed_when_vllm_was_started_with_one(provider_server):
    vllm = provider_server("vllm", require_key=True)

    results = check_run("llm", {"endpoint": vllm.base_url, "model": "meta-llama/Llama-3.1-8B-Instruct"})

    failed = next(r for r in results if r.status == "failed")
    assert (failed.name, failed.code) == ("auth", "auth")
    assert "enter it in API Key" in failed.message


def test_it_passes_with_the_key_vllm_was_started_with(provider_server):
    vllm = provider_server("vllm", require_key=True)

    results = check_run("embeddings", {"endpoint": vllm.base_url, "api_key": vllm.api_key, "model": "BAAI/bge-m3",
                                       "dimensions": 1024})

    assert [r.status for r in results if r.status not in ("ok", "warning")] == []


def test_it_reads_vllms_error_object_for_an_unknown_model(provider_server):
    vllm = provider_server("vllm")

    with pytest.raises(BackendError) as caught:
        OpenAICompatibleLLM({"endpoint": vllm.base_url, "model": "Qwen/Qwen2-7B"}).chat(HELLO)

    assert caught.value.code == "model_not_found"


def test_it_reports_localais_could_not_load_model_as_model_not_found(provider_server):
    localai = provider_server("localai")

    results = check_run("llm", {"endpoint": localai.base_url, "model": "llama-3-missing"})

    failed = next(r for r in results if r.status == "failed")
    assert (failed.name, failed.code) == ("operation", "model_not_found")


def test_it_embeds_with_localai(provider_server):
    localai = provider_server("localai")

    vectors = OpenAICompatibleEmbeddings({"endpoint": localai.base_url, "model": "bert-embeddings",
                                          "dimensions": 384}).embed(["a", "b"])

    assert [len(v) for v in vectors] == [384, 384]


def test_it_says_a_key_is_needed_when_localai_has_one(provider_server):
    localai = provider_server("localai", require_key=True)

    with pytest.raises(BackendError) as caught:
        OpenAICompatibleLLM({"endpoint": localai.base_url, "model": "phi-2"}).chat(HELLO)

    assert (caught.value.code, "enter it in API Key" in caught.value.message) == ("auth", True)

"""The real local llama.cpp server (SmolLM2-135M-Instruct) behind the same LLM backend and check."""

import pytest

from byoi.backends.llm import OpenAICompatibleLLM
from byoi.checks import check_run

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def patient(settings):
    # A 135M model on two shared cores: the first answer can take longer than the suite's 10 s under load.
    settings.BYOI_OPERATION_TIMEOUT = 60

HELLO = [{"role": "user", "content": "Say hello in three words."}]


def test_it_passes_the_llm_check_against_the_local_server(llama_server):
    results = check_run("llm", llama_server.llm_settings())
    assert [(r.name, r.status) for r in results] == [("address", "ok"), ("tcp", "ok"), ("tls", "warning"),
                                                     ("auth", "ok"), ("operation", "ok")], [r.message for r in results]


def test_it_streams_tokens_from_the_local_server(llama_server):
    deltas = list(OpenAICompatibleLLM(llama_server.llm_settings()).stream(HELLO, max_tokens=12))
    assert len(deltas) > 1
    assert "".join(deltas).strip()


def test_it_answers_a_chat_from_the_local_server(llama_server):
    assert OpenAICompatibleLLM(llama_server.llm_settings()).chat(HELLO, max_tokens=12).strip()


def test_it_lists_the_local_model(llama_server):
    assert llama_server.model in OpenAICompatibleLLM(llama_server.llm_settings()).models()

"""OpenAICompatibleLLM against a real HTTP server speaking the OpenAI protocol."""

import socket
import time

import pytest

from byoi.backends.base import BackendError
from byoi.backends.llm import OpenAICompatibleLLM
from byoi.errors import AUTH_HINT
from tests.openai_server import REPLY, OpenAIServer
from wizchat import embedded

HELLO = [{"role": "user", "content": "Hello"}]


def llm(settings, **kwargs) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(settings, **kwargs)


def failure(backend, call=lambda b: b.chat(HELLO)) -> BackendError:
    with pytest.raises(BackendError) as caught:
        call(backend)
    return caught.value


def test_it_returns_the_chat_completion(openai_server):
    assert llm(openai_server.llm_settings()).chat(HELLO) == REPLY


def test_it_sends_the_configured_model_to_the_endpoint(openai_server):
    llm(openai_server.llm_settings(model="llama-3.1-70b")).chat(HELLO)
    assert [r.model for r in openai_server.calls("/chat/completions")] == ["llama-3.1-70b"]


def test_it_streams_text_deltas(openai_server):
    deltas = list(llm(openai_server.llm_settings()).stream(HELLO))
    assert len(deltas) > 1
    assert "".join(deltas) == REPLY


def test_it_reads_the_servers_token_counts_from_the_stream(openai_server):
    usage: dict = {}
    deltas = list(llm(openai_server.llm_settings()).stream(HELLO, usage=usage))
    assert "".join(deltas) == REPLY
    assert usage == {"prompt_tokens": 5, "completion_tokens": len(REPLY.split(" "))}
    assert openai_server.calls("/chat/completions")[-1].body["stream_options"] == {"include_usage": True}


def test_it_streams_without_usage_from_a_server_that_refuses_stream_options(openai_server):
    openai_server.reject_stream_options = True
    backend = llm(openai_server.llm_settings())
    usage: dict = {}
    assert "".join(backend.stream(HELLO, usage=usage)) == REPLY
    assert usage == {}
    assert "".join(backend.stream(HELLO)) == REPLY  # remembered: no second refusal
    assert [("stream_options" in r.body) for r in openai_server.calls("/chat/completions")] == [True, False, False]


def test_it_lists_the_endpoints_models(openai_server):
    assert "gpt-4o-mini" in llm(openai_server.llm_settings()).models()


def test_it_returns_no_models_when_the_endpoint_has_no_models_route(openai_server):
    openai_server.models_endpoint = False
    assert llm(openai_server.llm_settings()).models() is None


def test_it_reports_a_wrong_key_as_auth_with_the_spec_hint(openai_server):
    error = failure(llm(openai_server.llm_settings(api_key="sk-wrong-0123456789abcdef")))
    assert (error.code, error.hint) == ("auth", AUTH_HINT)


def test_it_never_puts_the_api_key_in_an_error(openai_server):
    key = "sk-wrong-0123456789abcdef"
    error = failure(llm(openai_server.llm_settings(api_key=key)))
    assert key not in str(error) and key not in error.hint and key not in repr(error.as_dict())


def test_it_reports_an_unknown_model_as_model_not_found(openai_server):
    assert failure(llm(openai_server.llm_settings(model="gpt-99"))).code == "model_not_found"


def test_it_reports_an_html_page_as_protocol(openai_server):
    openai_server.mode = "html"
    assert failure(llm(openai_server.llm_settings())).code == "protocol"


def test_it_reports_an_html_page_while_streaming_as_protocol(openai_server):
    openai_server.mode = "html"
    assert failure(llm(openai_server.llm_settings()), lambda b: list(b.stream(HELLO))).code == "protocol"


def test_it_reports_json_without_choices_as_protocol(openai_server):
    openai_server.mode = "no_choices"
    assert failure(llm(openai_server.llm_settings())).code == "protocol"


def test_it_reports_a_redirect_as_protocol_without_following_it(openai_server):
    target = OpenAIServer().start()
    try:
        openai_server.mode, openai_server.redirect_to = "redirect", target.base_url
        error = failure(llm(openai_server.llm_settings()))
        assert error.code == "protocol"
        assert target.requests == []
    finally:
        target.stop()


def test_it_reports_a_server_error_as_unavailable(openai_server):
    openai_server.mode = "error500"
    assert failure(llm(openai_server.llm_settings())).code == "unavailable"


def test_it_times_out_within_the_operation_timeout_when_the_server_never_answers(openai_server):
    openai_server.mode = "hang"
    backend = llm(openai_server.llm_settings(), operation_timeout=1)
    started = time.monotonic()
    error = failure(backend)
    # Product requirement: a hung endpoint fails within its configured timeout plus one second.
    assert time.monotonic() - started < 1 + 1.0
    assert error.code == "timeout"


def test_it_times_out_within_the_operation_timeout_when_the_answer_trickles_in(openai_server):
    openai_server.mode = "drip"
    backend = llm(openai_server.llm_settings(), operation_timeout=1)
    started = time.monotonic()
    error = failure(backend)
    assert time.monotonic() - started < 1 + 1.0
    assert error.code == "timeout"


def test_it_times_out_when_a_listening_socket_never_accepts():
    with socket.create_server(("127.0.0.1", 0), backlog=1) as silent:
        backend = llm({"endpoint": f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "api_key": "k",
                       "model": "m"}, operation_timeout=1)
        started = time.monotonic()
        error = failure(backend)
        assert time.monotonic() - started < 1 + 1.0
        assert error.code == "timeout"


def test_it_reports_a_closed_port_as_refused():
    backend = llm({"endpoint": f"http://127.0.0.1:{embedded.free_port()}/v1", "api_key": "k", "model": "m"})
    assert failure(backend).code == "refused"


def test_it_switches_to_max_completion_tokens_for_reasoning_models(openai_server):
    openai_server.reasoning_model = True
    assert llm(openai_server.llm_settings()).chat(HELLO, max_tokens=3) == "Hello from the"


def test_it_reports_an_empty_model_name_as_config(openai_server):
    assert failure(llm(openai_server.llm_settings(model=""))).code == "config"


def test_it_keeps_secrets_out_of_its_repr(openai_server):
    assert openai_server.api_key not in repr(llm(openai_server.llm_settings()))

"""Test Connection for a custom LLM, run for real against an OpenAI-protocol server."""

from byoi.checks import check_run
from byoi.errors import AUTH_HINT
from wizchat import embedded


def summary(results) -> list[tuple[str, str, str]]:
    return [(r.name, r.status, r.code) for r in results]


def test_it_passes_every_step_against_a_working_endpoint(openai_server):
    results = check_run("llm", openai_server.llm_settings())
    assert summary(results) == [("address", "ok", ""), ("tcp", "ok", ""), ("tls", "warning", ""), ("auth", "ok", ""),
                                ("operation", "ok", "")]


def test_it_sends_a_real_chat_completion_as_the_operation(openai_server):
    check_run("llm", openai_server.llm_settings())
    assert [r.model for r in openai_server.calls("/chat/completions")] == ["gpt-4o-mini"]


def test_it_shows_what_the_model_answered(openai_server):
    results = check_run("llm", openai_server.llm_settings())
    assert "Hello" in results[-1].message


def test_it_has_a_tls_step_for_https_endpoints():
    from byoi.checks import check_plan

    steps = check_plan("llm", {"endpoint": "https://api.example.com/v1", "api_key": "k", "model": "m"})
    assert [s.name for s in steps] == ["address", "tcp", "tls", "auth", "operation"]


def test_it_fails_authentication_for_a_wrong_key_with_the_spec_hint(openai_server):
    results = check_run("llm", openai_server.llm_settings(api_key="sk-wrong-key-000111222"))
    auth = results[3]
    assert (auth.status, auth.code, auth.hint) == ("failed", "auth", AUTH_HINT)
    assert results[4].status == "skipped"


def test_it_never_shows_the_api_key_in_step_results(openai_server):
    key = "sk-wrong-key-000111222"
    results = check_run("llm", openai_server.llm_settings(api_key=key))
    assert all(key not in str(r.as_dict()) for r in results)


def test_it_reports_an_unknown_model_at_the_operation_step(openai_server):
    results = check_run("llm", openai_server.llm_settings(model="gpt-99"))
    assert summary(results)[-1] == ("operation", "failed", "model_not_found")


def test_it_checks_the_key_with_the_chat_when_the_endpoint_has_no_models_route(openai_server):
    openai_server.models_endpoint = False
    results = check_run("llm", openai_server.llm_settings(api_key="sk-wrong-key-000111222"))
    assert summary(results)[3:] == [("auth", "ok", ""), ("operation", "failed", "auth")]


def test_it_reports_an_html_page_as_protocol(openai_server):
    openai_server.mode = "html"
    results = check_run("llm", openai_server.llm_settings())
    assert summary(results)[3] == ("auth", "failed", "protocol")


def test_it_reports_json_without_choices_as_protocol(openai_server):
    openai_server.mode = "no_choices"
    results = check_run("llm", openai_server.llm_settings())
    assert summary(results)[-1] == ("operation", "failed", "protocol")


def test_it_reports_a_closed_port_at_the_tcp_step():
    settings = {"endpoint": f"http://127.0.0.1:{embedded.free_port()}/v1", "api_key": "k", "model": "m"}
    assert summary(check_run("llm", settings))[:2] == [("address", "ok", ""), ("tcp", "failed", "refused")]


def test_it_reports_an_invalid_endpoint_as_config():
    results = check_run("llm", {"endpoint": "not a url", "api_key": "k", "model": "m"})
    assert summary(results)[0] == ("address", "failed", "config")

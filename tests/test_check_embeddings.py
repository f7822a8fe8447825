"""Test Connection for custom embeddings, run for real against an OpenAI-protocol server."""

from byoi.checks import check_run


def summary(results) -> list[tuple[str, str, str]]:
    return [(r.name, r.status, r.code) for r in results]


def test_it_passes_every_step_against_a_working_endpoint(openai_server):
    results = check_run("embeddings", openai_server.embeddings_settings())
    assert summary(results) == [("address", "ok", ""), ("tcp", "ok", ""), ("tls", "warning", ""), ("auth", "ok", ""),
                                ("operation", "ok", "")]


def test_it_generates_a_real_vector_as_the_operation(openai_server):
    check_run("embeddings", openai_server.embeddings_settings(dimensions=1536))
    assert openai_server.calls("/embeddings")[0].body["dimensions"] == 1536


def test_it_reports_a_dimension_mismatch_naming_both_numbers(openai_server):
    results = check_run("embeddings", openai_server.embeddings_settings(model="nomic-embed-text", dimensions=3072))
    operation = results[-1]
    assert (operation.status, operation.code) == ("failed", "dimension_mismatch")
    assert "768" in operation.message and "3072" in operation.message


def test_it_fails_authentication_for_a_wrong_key_without_showing_it(openai_server):
    key = "sk-embed-wrong-5544332211"
    results = check_run("embeddings", openai_server.embeddings_settings(api_key=key))
    assert summary(results)[3] == ("auth", "failed", "auth")
    assert all(key not in str(r.as_dict()) for r in results)


def test_it_reports_an_unknown_model_at_the_operation_step(openai_server):
    results = check_run("embeddings", openai_server.embeddings_settings(model="embed-nope"))
    assert summary(results)[-1] == ("operation", "failed", "model_not_found")


def test_it_reports_an_html_page_as_protocol(openai_server):
    openai_server.mode = "html"
    assert summary(check_run("embeddings", openai_server.embeddings_settings()))[3] == ("auth", "failed", "protocol")

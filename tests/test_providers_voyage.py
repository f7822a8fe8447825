"""Voyage AI embeddings against a server that answers like Voyage (tests/provider_servers.py): no
encoding_format (Voyage refuses "float"), its own dimension parameter output_dimension, {"detail": …} errors."""

import pytest

from byoi.backends.base import BackendError
from byoi.backends.embeddings import OpenAICompatibleEmbeddings
from byoi.checks import check_run
from byoi.registry import KINDS
from tests.provider_servers import *  # noqa: F403 - the provider_server and provider_dns fixtures

HOST = "api.voyageai.com"


@pytest.fixture
def voyage(provider_server, provider_dns):
    provider_dns(HOST)
    return provider_server("voyage")


def settings(server, **changes) -> dict:
    return {"endpoint": server.url("/v1", host=HOST), "api_key": server.api_key, "model": "voyage-3.5",
            "dimensions": 1024, **changes}


def test_it_sends_no_encoding_format_and_asks_for_dimensions_with_output_dimension(voyage):
    vectors = OpenAICompatibleEmbeddings(settings(voyage, dimensions=512)).embed(["a", "b"])

    body = voyage.calls("/embeddings")[0].body
    assert [len(v) for v in vectors] == [512, 512]
    assert (body.get("output_dimension"), "encoding_format" in body, "dimensions" in body) == (512, False, False)


def test_it_sends_no_dimension_parameter_to_a_model_without_one(voyage):
    OpenAICompatibleEmbeddings(settings(voyage, model="voyage-3")).embed(["a"])

    assert set(voyage.calls("/embeddings")[0].body) == {"model", "input"}


def test_it_passes_test_connection(voyage):
    results = check_run("embeddings", settings(voyage))

    assert [(r.name, r.status) for r in results][3:] == [("auth", "ok"), ("operation", "ok")]


def test_it_reports_a_wrong_key_from_its_detail_answer(voyage):
    results = check_run("embeddings", settings(voyage, api_key="pa-wrong-0000000000"))

    failed = next(r for r in results if r.status == "failed")
    assert (failed.name, failed.code) == ("auth", "auth")


def test_it_reports_an_unknown_model_as_model_not_found(voyage):
    with pytest.raises(BackendError) as caught:
        OpenAICompatibleEmbeddings(settings(voyage, model="voyage-9")).embed(["a"])

    assert caught.value.code == "model_not_found"


def test_it_says_voyage_serves_embeddings_only():
    with pytest.raises(ValueError, match="embeddings only"):
        KINDS["llm"].field("endpoint").coerce("https://api.voyageai.com/v1")


def test_it_asks_an_unrecognised_server_that_refuses_encoding_format_again_without_it(provider_server):
    server = provider_server("voyage")  # Voyage's behaviour behind an address WizChat does not recognise
    backend = OpenAICompatibleEmbeddings(settings(server, endpoint=server.url("/v1"), model="voyage-3"))

    backend.embed(["a"])
    backend.embed(["b"])

    assert ["encoding_format" in c.body for c in server.calls("/embeddings")] == [True, False, False]

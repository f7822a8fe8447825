"""Embeddings backends: the OpenAI-compatible API (real test server) and the in-process MiniLM."""

import math
import time

import pytest

from byoi.backends.base import BackendError
from byoi.backends.embeddings import BATCH_SIZE, LocalEmbeddings, OpenAICompatibleEmbeddings
from tests.openai_server import fake_embedding


def remote(settings, **kwargs) -> OpenAICompatibleEmbeddings:
    return OpenAICompatibleEmbeddings(settings, **kwargs)


def failure(backend, texts=("hello",)) -> BackendError:
    with pytest.raises(BackendError) as caught:
        backend.embed(list(texts))
    return caught.value


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


# -- OpenAI-compatible ----------------------------------------------------------------------------------------

def test_it_returns_one_vector_per_text_of_the_configured_size(openai_server):
    vectors = remote(openai_server.embeddings_settings(dimensions=3072)).embed(["one", "two", "three"])
    assert [len(v) for v in vectors] == [3072, 3072, 3072]


def test_it_keeps_the_order_of_the_texts(openai_server):
    vectors = remote(openai_server.embeddings_settings()).embed(["alpha", "beta"])
    assert vectors[1] == pytest.approx(fake_embedding("beta", 3072))


def test_it_asks_text_embedding_3_models_for_the_configured_dimensions(openai_server):
    vectors = remote(openai_server.embeddings_settings(model="text-embedding-3-large", dimensions=1024)).embed(["x"])
    assert openai_server.calls("/embeddings")[0].body["dimensions"] == 1024
    assert len(vectors[0]) == 1024


def test_it_does_not_send_dimensions_to_other_models(openai_server):
    remote(openai_server.embeddings_settings(model="nomic-embed-text", dimensions=768)).embed(["x"])
    assert "dimensions" not in openai_server.calls("/embeddings")[0].body


def test_it_names_both_numbers_on_a_dimension_mismatch(openai_server):
    error = failure(remote(openai_server.embeddings_settings(model="nomic-embed-text", dimensions=3072)))
    assert error.code == "dimension_mismatch"
    assert "768" in error.message and "3072" in error.message


def test_it_sends_large_inputs_in_batches(openai_server):
    vectors = remote(openai_server.embeddings_settings(dimensions=256)).embed([f"t{i}" for i in range(BATCH_SIZE + 6)])
    assert len(vectors) == BATCH_SIZE + 6
    assert [len(r.body["input"]) for r in openai_server.calls("/embeddings")] == [BATCH_SIZE, 6]


def test_it_reports_a_wrong_key_as_auth_without_the_key(openai_server):
    key = "sk-embed-wrong-99887766"
    error = failure(remote(openai_server.embeddings_settings(api_key=key)))
    assert error.code == "auth"
    assert key not in str(error)


def test_it_reports_an_unknown_model_as_model_not_found(openai_server):
    assert failure(remote(openai_server.embeddings_settings(model="embed-nope"))).code == "model_not_found"


def test_it_reports_an_html_page_as_protocol(openai_server):
    openai_server.mode = "html"
    assert failure(remote(openai_server.embeddings_settings())).code == "protocol"


def test_it_reports_json_without_vectors_as_protocol(openai_server):
    openai_server.mode = "no_choices"
    assert failure(remote(openai_server.embeddings_settings())).code == "protocol"


def test_it_times_out_within_the_operation_timeout_when_the_answer_trickles_in(openai_server):
    openai_server.mode = "drip"
    backend = remote(openai_server.embeddings_settings(), operation_timeout=1)
    started = time.monotonic()
    error = failure(backend)
    assert time.monotonic() - started < 1 + 1.0
    assert error.code == "timeout"


def test_it_rejects_a_non_numeric_dimensions_setting(openai_server):
    with pytest.raises(BackendError) as caught:
        remote(openai_server.embeddings_settings(dimensions="lots"))
    assert caught.value.code == "config"


# -- in-process MiniLM ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local():
    return LocalEmbeddings({})


def test_it_embeds_locally_into_384_dimensions(local):
    assert [len(v) for v in local.embed(["hello world", "second text"])] == [384, 384]


def test_it_returns_unit_vectors_locally(local):
    assert math.hypot(*local.embed(["normalised?"])[0]) == pytest.approx(1.0, abs=1e-4)


def test_it_places_cat_closer_to_kitten_than_to_car(local):
    cat, kitten, car = local.embed(["cat", "kitten", "car"])
    assert cosine(cat, kitten) > cosine(cat, car)


def test_it_ranks_a_relevant_passage_above_an_unrelated_one(local):
    question, refund, weather = local.embed(["How do I get my money back?",
                                             "Refunds are issued within 14 days of a return request.",
                                             "Tomorrow will be sunny with light winds."])
    assert cosine(question, refund) > cosine(question, weather)


def test_it_gives_the_same_vector_alone_or_in_a_padded_batch(local):
    alone = local.embed(["short"])[0]
    batched = local.embed(["short", "a much longer sentence that forces padding of the shorter one"])[0]
    assert alone == pytest.approx(batched, abs=1e-4)


def test_it_truncates_texts_longer_than_the_model_window(local):
    vector = local.embed(["word " * 2000])[0]
    assert len(vector) == 384


def test_it_embeds_nothing_for_no_texts(local):
    assert local.embed([]) == []

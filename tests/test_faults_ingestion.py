"""The fault matrix, during an ingestion: the customer's vector store, FalkorDB, embeddings and LLM (entity
extraction) stopped, silent from the start or silent after working. The job fails with the taxonomy's code
within the timeout + 1 s and keeps its place; once the peer is back (and the breaker cooled down), Retry
finishes with exactly one chunk per piece of text — nothing lost, nothing twice, nothing restarted."""

import time

import pytest

from byoi import resolver
from byoi.access import ComponentFailed, resolve_stack
from chatbots.ingestion import document_add, document_ingest, document_retry
from tests.faults import COOLDOWN, EXPECTED_CODE, FAILURES, report_bound

TEXT = "\n\n".join(
    f"Chapter {n}: Acme Corporation ships the Wombatrix Engine from Zurich to Globex Industries in Basel."
    for n in range(24))
WARM_UP = "Initech builds the Frobnicator in Geneva. Umbrella Holdings sells it in Lyon."
KINDS = ("vector_store", "graph", "embeddings", "llm")


def chunk_ids(document) -> list[str]:
    return [f"{document.id}:{n}" for n in range(document.chunks_total)]


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("kind", KINDS)
def test_an_ingestion_reports_the_failure_in_time_and_retry_stores_every_chunk_once(chatbot, behind_proxy, kind,
                                                                                   failure, fault_record):
    proxy = behind_proxy(chatbot, kind)
    chatbot.chunk_size, chatbot.chunk_overlap = 200, 0
    chatbot.entity_extraction = "llm" if kind == "llm" else chatbot.entity_extraction
    chatbot.save()
    documents = []
    if failure == "silent after working":
        warm, _ = document_add(chatbot, title="Warm-up", text=WARM_UP, queue=False)
        documents.append(document_ingest(warm.id))
        assert documents[-1].status == "done"
    else:
        resolver.clear_cache()  # nothing pooled: as a worker that never reached the peer
    proxy.set(FAILURES[failure])
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)

    started = time.monotonic()
    with pytest.raises(ComponentFailed) as failed:
        document_ingest(document.id)
    seconds = time.monotonic() - started
    document.refresh_from_db()
    assert failed.value.kind == kind
    assert document.status == "failed" and document.error_code == failed.value.code == EXPECTED_CODE[failure]
    assert seconds < report_bound(kind, failure) + 1

    proxy.forward()
    time.sleep(COOLDOWN + 0.1)
    document_retry(document)
    documents.append(document_ingest(document.id))
    assert documents[-1].status == "done", documents[-1].error_message
    stack = resolve_stack(chatbot)
    expected = sum(d.chunks_total for d in documents)
    stored = stack.vector_store.count(chatbot.id)
    graphed = stack.graph.ids_present(chatbot.id, chunk_ids(documents[-1]))
    fault_record(kind, failure, "ingestion", failed.value.code, seconds, expected - stored,
                 chunks=documents[-1].chunks_total)
    assert stored == expected  # every chunk, once (ids are deterministic: a retry overwrites, never adds)
    assert graphed == set(chunk_ids(documents[-1]))

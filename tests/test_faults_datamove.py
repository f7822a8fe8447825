"""The fault matrix, during a data copy (`manage.py byoi_migrate --to custom`): the customer's vector store,
FalkorDB and conversations database stopped, silent from the start, or going silent in the middle of the copy
(after its first batch). The command fails naming the target with the taxonomy's fix within the timeout + 1 s
(plus what it copied before), deletes nothing, and a rerun once the peer is back copies exactly what was
missing: the target then holds every item once."""

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from byoi import resolver
from byoi.errors import HINTS
from chatbots.ingestion import document_add, document_ingest
from conversations.services import conversation_append, message_new
from tests.faults import COOLDOWN, EXPECTED_CODE, FAILURES, report_bound

TEXT = "\n\n".join(
    f"Chapter {n}: Acme Corporation ships the Wombatrix Engine from Zurich to Globex Industries in Basel."
    for n in range(24))
KINDS = ("vector_store", "graph", "conversations")


class FailAfterFirstBatch(StringIO):
    """Command output that switches the proxy once the first batch is reported: a peer going away mid-copy."""

    def __init__(self, proxy, kind: str, mode: str):
        super().__init__()
        self.proxy, self.kind, self.mode, self.started = proxy, kind, mode, None

    def write(self, text):
        if self.started is None and f"{self.kind}: batch 1:" in text:
            self.proxy.set(self.mode)
            self.started = time.monotonic()
        return super().write(text)


def code_of(message: str) -> str:
    return next(code for code, hint in HINTS.items() if hint in message)


def target_count(chatbot, kind: str) -> int:
    backend = resolver.resolve(chatbot).backend(kind)
    if kind == "graph":
        return len(backend.ids_present(chatbot.id, [f"{d.id}:{n}" for d in chatbot.documents.all()
                                                    for n in range(d.chunks_total)]))
    return backend.count(chatbot.id)


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_data_copy_reports_the_failure_in_time_and_a_rerun_completes_it(chatbot, behind_proxy, kind, failure,
                                                                         fault_record):
    chatbot.chunk_size, chatbot.chunk_overlap = 200, 0
    chatbot.save()
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    document = document_ingest(document.id)
    for n in range(12):
        conversation_append(chatbot, message_new(f"c{n % 3}", "user", f"Question {n}"))
    total = {"vector_store": document.chunks_total, "graph": document.chunks_total, "conversations": 12}[kind]
    proxy = behind_proxy(chatbot, kind)  # the target: the customer's own store, empty
    resolver.clear_cache()
    out = FailAfterFirstBatch(proxy, kind, FAILURES[failure])
    if failure != "silent after working":
        proxy.set(FAILURES[failure])

    started = time.monotonic()
    with pytest.raises(CommandError) as failed:
        call_command("byoi_migrate", str(chatbot.id), "--to", "custom", "--kinds", kind, "--batch-size", "4",
                     stdout=out)
    seconds = time.monotonic() - (out.started or started)
    message = str(failed.value)
    code = code_of(message)
    assert code == EXPECTED_CODE[failure]
    assert "the target (your infrastructure, 127.0.0.1" in message and "Nothing in the source was deleted" in message
    assert seconds < report_bound(kind, failure) + 1

    proxy.forward()
    time.sleep(COOLDOWN + 0.1)
    second = StringIO()
    call_command("byoi_migrate", str(chatbot.id), "--to", "custom", "--kinds", kind, "--batch-size", "4",
                 stdout=second)
    copied = target_count(chatbot, kind)
    fault_record(kind, failure, "data copy", code, seconds, total - copied)
    assert copied == total
    if failure == "silent after working":
        assert f"copied {total - 4}, skipped 4 already present" in second.getvalue()  # only what was missing

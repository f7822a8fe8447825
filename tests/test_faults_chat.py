"""The fault matrix, during a chat: each customer component (their PostgreSQL as conversations store and as vector
store, their FalkorDB, their LLM and embeddings endpoints) stopped, silent from the start, or silent after it
worked (its pooled connections then hang). The chat reports the taxonomy's code within the timeout + 1 s — or,
for the conversations store, answers anyway and queues the exchange — nothing is lost, and the chatbot works
again once the peer is back, after the breaker's cool-down, with nothing restarted."""

import time

import psycopg
import pytest
from psycopg import sql

from byoi import resolver
from chatbots.chat import chat_answer
from chatbots.ingestion import document_add, document_ingest
from conversations.models import Outbox
from tests.faults import COOLDOWN, EXPECTED_CODE, FAILURES, KINDS, report_bound
from tests.peers import PEERS

TEXT = "\n\n".join(
    f"Part {n}: The Wombatrix Engine stores answers for Acme Corporation in Zurich. "
    f"Globex Industries runs the Wombatrix Engine near Basel." for n in range(6))
QUESTION = "Where does Acme Corporation keep the Wombatrix Engine?"


def customer_messages(db: dict, chatbot) -> int:
    with psycopg.connect(PEERS.customer_pg.dsn(db["database"])) as conn:
        table = f"wizchat_messages_{chatbot.id.hex}"
        if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
            return 0
        return conn.execute(sql.SQL("SELECT count(DISTINCT id) FROM {}").format(sql.Identifier(table))).fetchone()[0]


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_chat_reports_the_failure_in_time_loses_nothing_and_recovers(request, chatbot, behind_proxy, openai_server,
                                                                      kind, failure, fault_record):
    proxy = behind_proxy(chatbot, kind)
    chatbot.chunk_size, chatbot.chunk_overlap = 200, 0
    chatbot.save()
    document, _ = document_add(chatbot, title="Wombatrix", text=TEXT, queue=False)
    assert document_ingest(document.id).status == "done"
    exchanges, conversation = 0, None
    if failure == "silent after working":
        first = chat_answer(chatbot, QUESTION)
        assert first["error"] is None and first["stored"] == "stored"
        exchanges, conversation = 1, first["conversation_id"]  # continuing it reads its history back
    else:
        resolver.clear_cache()  # nothing pooled: as a process that never reached the peer
    proxy.set(FAILURES[failure])

    started = time.monotonic()
    result = chat_answer(chatbot, QUESTION, conversation)
    seconds = time.monotonic() - started
    exchanges += 1
    if kind == "conversations":
        assert result["error"] is None and result["answer"] == openai_server.reply  # answered anyway
        assert result["stored"] == "queued"
        code = Outbox.objects.filter(chatbot=chatbot).first().error_code
    else:
        code = result["error"]["code"]
    assert code == EXPECTED_CODE[failure]
    assert seconds < report_bound(kind, failure) + 1

    proxy.forward()
    time.sleep(COOLDOWN + 0.1)
    again = chat_answer(chatbot, QUESTION, conversation)
    exchanges += 1
    assert again["error"] is None and again["answer"] == openai_server.reply
    lost = 0
    if kind == "conversations":
        assert again["stored"] == "stored"  # the queued exchange went first, then this one
        assert not Outbox.objects.filter(chatbot=chatbot).exists()
        lost = 2 * exchanges - customer_messages(request.getfixturevalue("customer_db"), chatbot)
    fault_record(kind, failure, "chat", code, seconds, lost)
    assert lost == 0

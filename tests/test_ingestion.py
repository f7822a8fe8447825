import time

import pytest

from byoi.resolver import resolve
from byoi.services import byoi_set_enabled, component_save
from chatbots import ingestion
from chatbots.extraction import extract_rules, mentioned_entities
from chatbots.ingestion import DocumentRejected, chunk_text, document_add, document_ingest, document_parse
from chatbots.models import Document, DocumentSource
from wizchat.plans import PlanLimitReached

TEXT = (
    "WizChat is a hosted chatbot platform. BYOI lets a customer replace the defaults. "
    "Custom FalkorDB stores the knowledge graph. The Vector Store uses PostgreSQL with pgvector.\n\n"
) * 12


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF whose text layer holds `text` (built by hand: no PDF writer is installed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def stack_of(chatbot):
    import byoi

    return byoi.resolve(chatbot)


def ingest(chatbot, title="Guide", text=TEXT):
    document, _ = document_add(chatbot, title=title, text=text, queue=False)
    return document_ingest(document.id)


# -- parsing -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,data", [
    ("notes.txt", b"Plain notes about BYOI."),
    ("notes.md", b"# Title\n\nMarkdown about BYOI."),
    ("page.html", b"<html><head><style>p{}</style><script>var x=1</script></head><body><p>HTML about BYOI.</p></body></html>"),
])
def test_it_extracts_the_text_of_text_files(name, data):
    _, text = document_parse(name, data)
    assert "about BYOI" in text
    assert "var x" not in text


def test_it_extracts_the_text_of_a_pdf():
    file_type, text = document_parse("guide.pdf", make_pdf("WizChat answers from PDF files"))
    assert file_type == "pdf"
    assert "WizChat answers from PDF files" in text


@pytest.mark.parametrize("name,data,message", [
    ("empty.txt", b"", "is empty"),
    ("blank.md", b"   \n\n  ", "has no text"),
    ("tool.exe", b"MZ....", "not a supported type"),
    ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", "could not be read as a PDF"),
    ("fake.pdf", b"hello", "not a PDF file"),
    ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
    ("binary.txt", b"\x00\x01\x02", "binary file"),
])
def test_it_rejects_a_bad_file_with_a_specific_message(name, data, message):
    with pytest.raises(DocumentRejected) as excinfo:
        document_parse(name, data)
    assert message in str(excinfo.value)


def test_it_rejects_a_file_over_the_size_limit():
    with pytest.raises(DocumentRejected) as excinfo:
        document_parse("big.txt", b"a" * (ingestion.MAX_UPLOAD_BYTES + 1))
    assert "the limit is 10 MB" in str(excinfo.value)


# -- chunking and extraction --------------------------------------------------------------------------------

def test_it_chunks_within_the_size_with_overlap():
    chunks = chunk_text(TEXT, size=300, overlap=60)
    assert len(chunks) > 3
    assert all(len(c) <= 300 for c in chunks)
    assert chunks[0][-20:].split()[-1] in chunks[1]


def test_it_chunks_deterministically():
    assert chunk_text(TEXT, 400, 80) == chunk_text(TEXT, 400, 80)


def test_it_extracts_proper_nouns_and_sentence_relations():
    entities, relations = extract_rules("Custom FalkorDB uses Redis. The Custom LLM is compatible with Azure OpenAI.")
    assert {e.name for e in entities} == {"Custom FalkorDB", "Redis", "Custom LLM", "Azure OpenAI"}
    assert {(r.source, r.type, r.target) for r in relations} == {
        ("Custom FalkorDB", "USES", "Redis"), ("Custom LLM", "IS_COMPATIBLE_WITH", "Azure OpenAI")}


def test_it_ignores_capitalised_common_words_at_sentence_start():
    assert mentioned_entities("What is BYOI? The Pro plan includes it.") == ["BYOI", "Pro"]


# -- documents -----------------------------------------------------------------------------------------------

def test_it_ingests_into_the_vector_store_and_graph(chatbot):
    document = ingest(chatbot)
    stack = stack_of(chatbot)
    assert document.status == Document.Status.DONE
    assert stack.vector_store.count(chatbot.id) == document.chunks_total > 1
    assert stack.graph.count(chatbot.id)["nodes"] > 0


def test_it_keeps_no_document_text_on_the_platform_after_ingestion(chatbot):
    document = ingest(chatbot)
    assert not DocumentSource.objects.filter(document=document).exists()
    assert "FalkorDB" not in repr(Document.objects.filter(pk=document.pk).values().first())


def test_it_updates_a_document_uploaded_again_with_the_same_title(chatbot):
    ingest(chatbot, text=TEXT)
    document = ingest(chatbot, text="A much shorter second version about WizChat.")
    assert chatbot.documents.count() == 1
    assert stack_of(chatbot).vector_store.count(chatbot.id) == document.chunks_total == 1


def test_it_recognises_the_same_content_under_another_title(chatbot):
    ingest(chatbot, title="Guide")
    document, outcome = document_add(chatbot, title="Guide copy", text=TEXT, queue=False)
    assert outcome == "unchanged"
    assert chatbot.documents.count() == 1


def test_it_deletes_a_documents_vectors_and_graph_nodes(chatbot):
    document = ingest(chatbot)
    other = ingest(chatbot, title="Other", text="Ollama serves models. LocalAI too.")
    ingestion.document_delete(document)
    stack = stack_of(chatbot)
    assert stack.vector_store.count(chatbot.id) == other.chunks_total
    assert {f.target for f in stack.graph.neighbourhood(chatbot.id, ["Custom FalkorDB", "BYOI"])} == set()


def test_it_enforces_the_plans_document_limit(chatbot):
    plan = chatbot.account.plan
    plan.max_documents = 1
    plan.save()
    ingest(chatbot)
    with pytest.raises(PlanLimitReached):
        document_add(chatbot, title="Second", text="Another text.", queue=False)


def test_it_records_why_a_job_failed(chatbot, customer_db):
    component_save(chatbot, "vector_store", values={**customer_db, "port": 9}, secrets={"password": "x"})
    byoi_set_enabled(chatbot, True)
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    with pytest.raises(ingestion.ComponentFailed):
        document_ingest(document.id)
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error_code == "refused"
    assert "Vector Store" in document.error_message
    assert "port is open" in document.error_hint


def test_it_resumes_a_failed_job_without_embedding_again(chatbot, customer_db, openai_server):
    component_save(chatbot, "embeddings", values=openai_server.embeddings_settings(dimensions=64),
                   secrets={"api_key": openai_server.api_key})
    component_save(chatbot, "graph", values={"host": "127.0.0.1", "port": 9, "ssl": False}, secrets={})
    byoi_set_enabled(chatbot, True)
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    with pytest.raises(ingestion.ComponentFailed):
        document_ingest(document.id)
    document.refresh_from_db()
    assert (document.status, document.chunks_embedded) == (Document.Status.FAILED, document.chunks_total)
    calls = len(openai_server.calls("/embeddings"))
    from byoi.services import component_disable

    component_disable(chatbot, "graph")  # the customer fixes the graph (here: back to the default one)
    ingestion.document_retry(document)
    document = document_ingest(document.id)
    assert document.status == Document.Status.DONE
    assert len(openai_server.calls("/embeddings")) == calls


def test_it_resumes_after_the_last_chunk_really_stored_when_embedding_fails_midway(chatbot, openai_server, settings):
    # Ten embedding calls succeed, then the endpoint fails: the chunks embedded since the last write to the
    # vector store are not counted as stored, and the retry embeds exactly the rest.
    settings.BYOI_BREAKER_COOLDOWN = 0  # the endpoint is back at once (tests/test_faults_breaker.py has the cool-down)
    component_save(chatbot, "embeddings", values=openai_server.embeddings_settings(dimensions=64),
                   secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    text = "\n\n".join(f"Section {i}. Acme ships widget number {i} to Globex every Tuesday." for i in range(5000))
    document, _ = document_add(chatbot, title="Long guide", text=text, queue=False)
    openai_server.embeddings_fail_after = 10
    with pytest.raises(ingestion.ComponentFailed):
        document_ingest(document.id)
    document.refresh_from_db()
    stack = resolve(chatbot)
    stored = stack.vector_store.count(chatbot.id)
    assert document.status == Document.Status.FAILED
    assert 0 < document.chunks_embedded == stored < 10 * ingestion.EMBED_BATCH < document.chunks_total

    embedded_before = len(openai_server.calls("/embeddings"))
    openai_server.embeddings_fail_after = None
    ingestion.document_retry(document)
    document = document_ingest(document.id)
    assert document.status == Document.Status.DONE
    assert stack.vector_store.count(chatbot.id) == document.chunks_total
    missing = document.chunks_total - stored
    calls = openai_server.calls("/embeddings")[embedded_before:]
    assert sum(len(c.body["input"]) for c in calls if isinstance(c.body["input"], list)) == missing


# -- views ---------------------------------------------------------------------------------------------------

def test_it_uploads_a_file_from_the_page(owner_client, chatbot, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("guide.md", TEXT.encode(), content_type="text/markdown")
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/", {"file": upload},
                                 HTTP_HX_REQUEST="true")
    assert "“guide” added" in response.content.decode()
    assert chatbot.documents.get().status == Document.Status.QUEUED


def test_it_shows_a_bad_upload_message_on_the_page(owner_client, chatbot):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("broken.pdf", b"%PDF-1.7 garbage", content_type="application/pdf")
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/", {"file": upload},
                                 HTTP_HX_REQUEST="true")
    assert "could not be read as a PDF" in response.content.decode()
    assert not chatbot.documents.exists()


def test_it_asks_for_a_title_for_pasted_text(owner_client, chatbot):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/", {"mode": "paste", "text": "x"},
                                 HTTP_HX_REQUEST="true")
    assert "Give the pasted text a title." in response.content.decode()


def test_it_polls_a_running_job_and_stops_when_done(owner_client, chatbot):
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    url = f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/"
    assert "hx-trigger" in owner_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    document_ingest(document.id)
    body = owner_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in body
    assert "Ready" in body


def test_it_hides_another_accounts_document(client, outsider, chatbot):
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    client.force_login(outsider)
    assert client.post(f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/delete/").status_code == 404
    assert Document.objects.filter(pk=document.pk).exists()


@pytest.mark.django_db(transaction=True)  # plans come back through make_user (conftest._ensure_plans)
def test_it_ingests_in_the_celery_worker(celery_worker, owner, owner_client):
    from chatbots.services import chatbot_create

    chatbot = chatbot_create(owner.membership.account, name="Worker bot")
    owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/", {"mode": "paste", "title": "Guide",
                                                                       "text": TEXT})
    document = chatbot.documents.get()
    deadline = time.monotonic() + 120
    while not document.finished_state and time.monotonic() < deadline:
        time.sleep(0.3)
        document.refresh_from_db()
    assert document.status == Document.Status.DONE
    assert stack_of(chatbot).vector_store.count(chatbot.id) == document.chunks_total


def extract_with_llm(chatbot, openai_server, reply: str) -> None:
    """The chatbot extracts entities with its own LLM, which answers `reply`."""
    openai_server.reply = reply
    component_save(chatbot, "llm", values=openai_server.llm_settings(), secrets={"api_key": openai_server.api_key})
    byoi_set_enabled(chatbot, True)
    chatbot.entity_extraction = "llm"
    chatbot.save()


def test_it_extracts_entities_with_the_chatbots_llm_when_asked(chatbot, openai_server):
    extract_with_llm(chatbot, openai_server,
                     '{"entities": ["Zorblax", "Quintessa"], "relations": [["Zorblax", "owns", "Quintessa"]]}')
    ingest(chatbot, text="a text without any capitalised name at all.")
    facts = stack_of(chatbot).graph.neighbourhood(chatbot.id, ["Zorblax"])
    assert [(f.source, f.relation, f.target) for f in facts] == [("Zorblax", "OWNS", "Quintessa")]


def test_it_falls_back_to_the_rules_when_the_llm_answers_no_json(chatbot, openai_server):
    extract_with_llm(chatbot, openai_server, "Sorry, I cannot do that.")
    ingest(chatbot, text="Custom FalkorDB uses Redis.")
    facts = stack_of(chatbot).graph.neighbourhood(chatbot.id, ["Redis"])
    assert {(f.source, f.target) for f in facts} == {("Custom FalkorDB", "Redis")}


def test_it_saves_the_chunk_settings_for_new_documents(owner_client, chatbot):
    owner_client.post(f"/dashboard/chatbots/{chatbot.id}/knowledge-settings/",
                      {"chunk_size": 400, "chunk_overlap": 50, "entity_extraction": "rules"}, HTTP_HX_REQUEST="true")
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    assert (document.chunk_size, document.chunk_overlap) == (400, 50)


def test_it_refuses_an_overlap_over_half_the_chunk_size(owner_client, chatbot):
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/knowledge-settings/",
                                 {"chunk_size": 400, "chunk_overlap": 300, "entity_extraction": "rules"},
                                 HTTP_HX_REQUEST="true")
    chatbot.refresh_from_db()
    assert "at or under half the chunk size (200)" in response.content.decode()
    assert chatbot.chunk_overlap == 100


@pytest.mark.django_db(transaction=True)  # plans come back through make_user (conftest._ensure_plans)
def test_it_retries_a_job_automatically_once_the_component_is_back(celery_worker, owner, customer_db):
    from chatbots.services import chatbot_create
    from tests.peers import PEERS
    from tests.test_conversations import TcpProxy

    proxy = TcpProxy(PEERS.customer_pg.port)
    chatbot = chatbot_create(owner.membership.account, name="Retry bot")
    component_save(chatbot, "vector_store", values={**customer_db, "port": proxy.port},
                   secrets={"password": customer_db["password"]})
    byoi_set_enabled(chatbot, True)
    document, _ = document_add(chatbot, title="Guide", text=TEXT)  # queued to the worker; the store is down
    deadline = time.monotonic() + 60
    while not document.error_code and time.monotonic() < deadline:
        time.sleep(0.2)
        document.refresh_from_db()
    proxy.up()
    try:
        deadline = time.monotonic() + 90
        while document.status != Document.Status.DONE and time.monotonic() < deadline:
            time.sleep(0.5)
            document.refresh_from_db()
    finally:
        proxy.down()
    assert document.status == Document.Status.DONE
    assert document.attempts > 1


def test_it_retries_a_failed_job_from_the_page(owner_client, chatbot, customer_db, django_capture_on_commit_callbacks):
    component_save(chatbot, "vector_store", values={**customer_db, "port": 9}, secrets={"password": "x"})
    byoi_set_enabled(chatbot, True)
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    with pytest.raises(ingestion.ComponentFailed):
        document_ingest(document.id)
    page = owner_client.get(f"/dashboard/chatbots/{chatbot.id}/").content.decode()
    assert "Retry" in page and "port is open" in page
    with django_capture_on_commit_callbacks() as queued:
        owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/retry/", HTTP_HX_REQUEST="true")
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED
    assert len(queued) == 1


def test_it_deletes_a_document_from_the_page(owner_client, chatbot):
    document = ingest(chatbot)
    response = owner_client.post(f"/dashboard/chatbots/{chatbot.id}/documents/{document.id}/delete/")
    assert response.status_code == 302
    assert not chatbot.documents.exists()
    assert stack_of(chatbot).vector_store.count(chatbot.id) == 0


def test_it_leaves_no_chunks_when_a_document_is_deleted_during_its_job(chatbot, monkeypatch):
    document, _ = document_add(chatbot, title="Guide", text=TEXT, queue=False)
    original = ingestion._ingest

    def delete_midway(doc, text):
        Document.objects.filter(pk=doc.pk).delete()  # the user deletes it while the job runs
        original(doc, text)

    monkeypatch.setattr(ingestion, "_ingest", delete_midway)
    document_ingest(document.id)
    assert stack_of(chatbot).vector_store.count(chatbot.id) == 0

"""Documents → chunks → embeddings → the chatbot's vector store, and entities/relations → its graph.

Everything goes through `byoi.resolve(chatbot)`, so a default and a fully-BYOI chatbot share this code.
The document's text is never stored on the Document row; while the job is unfinished it is staged,
encrypted, in DocumentSource (deleted on success), so a failed job can be retried. A retry resumes: the
chunking is deterministic, and chunks already upserted (`chunks_embedded`) or already in the graph
(`chunks_graphed`) are skipped."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
import zlib
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import PurePath

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from byoi.access import (
    ComponentBusy,
    ComponentFailed,
    component,
    component_slots,
    failure_record,
    provision_once,
    resolve_stack,
)
from byoi.activity import component_success_record
from byoi.backends.base import Chunk, GraphChunk
from byoi.errors import BackendError, NotFound
from wizchat.celery import send_on_commit
from wizchat.plans import plan_check_document_limit
from wizchat.textcheck import control_characters_removed, text_problem

from . import extraction
from .models import Chatbot, Document, DocumentSource

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_TEXT_CHARS = 2_000_000
EMBED_BATCH = 32
# Embedded chunks are written to the vector store together, and then their entities to the graph: up to
# UPSERT_MAX_CHUNKS at once, or whatever was embedded (extracted) in UPSERT_MAX_WAIT seconds (so the progress bar
# still moves with a slow embedder or LLM). Each write costs round trips to the store, which may be the
# customer's database far away.
UPSERT_MAX_CHUNKS = 256
UPSERT_MAX_WAIT = 1.0
FILE_TYPES = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
              ".pdf": "pdf"}


class DocumentRejected(Exception):
    """A bad upload or paste; the message says what to fix."""


# -- parsing -----------------------------------------------------------------------------------------------

class _HTMLText(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
              "table", "ul", "ol", "blockquote", "header", "footer", "title"}
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        elif tag in self.SKIP:
            self.skipping += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping or self.in_title:
            self.parts.append(data)


def _decode(data: bytes, filename: str) -> str:
    if b"\x00" in data[:4096]:
        raise DocumentRejected(f"“{filename}” looks like a binary file, not text. Upload .txt, .md, .html or .pdf.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DocumentRejected(f"“{filename}” is not UTF-8 text. Save it as UTF-8 and upload it again.") from None


def _pdf_text(data: bytes, filename: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    damaged = (f"“{filename}” could not be read as a PDF (the file is damaged or not a PDF). Export it again and "
               "re-upload.")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentRejected(f"“{filename}” is password-protected. Remove the password and upload it again.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentRejected:
        raise
    except LimitReachedError:
        # A small file whose streams inflate past pypdf's limits: a decompression bomb, or a PDF far too big.
        raise DocumentRejected(f"“{filename}” expands to more data than WizChat reads from one PDF. Split it into "
                               "smaller PDFs, or paste its text.") from None
    except (PyPdfError, zlib.error, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError,
            UnicodeError, RecursionError, OverflowError):
        raise DocumentRejected(damaged) from None
    except Exception as error:  # noqa: BLE001 - a parser bug must still be a message, never a 500
        log.warning("PDF parser failed on an upload with %s", type(error).__name__)
        raise DocumentRejected(damaged) from None
    text = "\n\n".join(pages)
    if not text.strip():
        raise DocumentRejected(f"“{filename}” has no text to extract (a scanned PDF?). Upload a PDF with a text "
                               "layer, or paste the text.")
    return text


def document_parse(filename: str, data: bytes) -> tuple[str, str]:
    """(file type, plain text) of an uploaded file, or DocumentRejected saying what is wrong with it."""
    name = PurePath(filename or "").name or "The file"
    file_type = FILE_TYPES.get(PurePath(name).suffix.lower())
    if file_type is None:
        raise DocumentRejected(f"“{name}” is not a supported type. Upload a .txt, .md, .html or .pdf file.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DocumentRejected(f"“{name}” is {len(data) / 1048576:.1f} MB; the limit is "
                               f"{MAX_UPLOAD_BYTES // 1048576} MB. Split it into smaller documents.")
    if not data:
        raise DocumentRejected(f"“{name}” is empty. Choose a file with some text in it.")
    if file_type == "pdf":
        if not data.startswith(b"%PDF"):
            raise DocumentRejected(f"“{name}” is not a PDF file although its name ends in .pdf.")
        text = _pdf_text(data, name)
    else:
        text = _decode(data, name)
        if file_type == "html":
            parser = _HTMLText()
            parser.feed(text)
            parser.close()
            text = "".join(parser.parts)
    text = normalize(text)
    if not text:
        raise DocumentRejected(f"“{name}” has no text in it. Choose a file with some text.")
    return file_type, text


def normalize(text: str) -> str:
    """Line breaks unified, runs of spaces collapsed, control characters a parsed file may hold removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = control_characters_removed(re.sub(r"[ \t\f\v]+", " ", text), multiline=True)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- chunking ----------------------------------------------------------------------------------------------

def chunk_text(text: str, size: int = 700, overlap: int = 100) -> list[str]:
    """Split into chunks of at most `size` characters that end at a paragraph, sentence or word boundary
    where one is found in the chunk's second half; consecutive chunks share about `overlap` characters.
    Deterministic, so a resumed job gets the same chunks."""
    size = max(100, size)
    overlap = max(0, min(overlap, size // 2))
    chunks, start, n = [], 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            window = text[start + size // 2:end]
            for sep in ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "):
                cut = window.rfind(sep)
                if cut != -1:
                    end = start + size // 2 + cut + len(sep)
                    break
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        # Start the overlap at a word boundary.
        space = text.find(" ", nxt, end)
        start = space + 1 if overlap and space != -1 else nxt
    return chunks


# -- documents ---------------------------------------------------------------------------------------------

def _queue(document: Document) -> None:
    from .tasks import ingest_document_task

    document_id = str(document.id)

    def unsent(message: str) -> None:  # the broker is down: failed, with Retry, rather than queued forever
        Document.objects.filter(pk=document_id, status=Document.Status.QUEUED).update(
            status=Document.Status.FAILED, error_code="unavailable", error_message=message,
            error_hint="", updated=timezone.now())

    send_on_commit(ingest_document_task, document_id, unsent=unsent)


@transaction.atomic
def document_add(chatbot: Chatbot, *, title: str = "", text: str | None = None, filename: str = "",
                 data: bytes | None = None, queue: bool = True) -> tuple[Document, str]:
    """Add or update a document from an upload (`filename`, `data`) or pasted `text`.

    Returns (document, outcome) with outcome "added", "updated" or "unchanged". The same title or the same
    content updates the existing document instead of adding a duplicate. Raises DocumentRejected for bad
    input and PlanLimitReached when a new document exceeds the plan."""
    title = (title or "").strip()
    filename = control_characters_removed(PurePath(filename or "").name)
    if problem := text_problem(title, "the title"):
        raise DocumentRejected(problem)
    if data is not None:
        file_type, text = document_parse(filename, data)
        size = len(data)
        title = title or PurePath(filename).stem[:255].strip() or "Untitled"
    else:
        if problem := text_problem(text or "", "the pasted text", multiline=True):
            raise DocumentRejected(problem)
        text = normalize(text or "")
        if not text:
            raise DocumentRejected("The text is empty. Paste some text to add.")
        file_type, size = "paste", len(text.encode())
        if not title:
            raise DocumentRejected("Give the pasted text a title.")
    if len(title) > 255:
        raise DocumentRejected("The title is too long: 255 characters or fewer.")
    if len(text) > MAX_TEXT_CHARS:
        raise DocumentRejected(f"The text has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}. "
                               "Split it into smaller documents.")
    digest = hashlib.sha256(text.encode()).hexdigest()
    # One writer at a time (the limit and the de-duplication hold), and the current chunk settings.
    current = Chatbot.objects.select_for_update().get(pk=chatbot.pk)
    existing = (chatbot.documents.filter(title=title).first()
                or chatbot.documents.filter(content_hash=digest).first())
    if existing is None:
        plan_check_document_limit(chatbot)
        document = Document(chatbot=chatbot, title=title)
        outcome = "added"
    else:
        document = existing
        if existing.content_hash == digest and existing.status != Document.Status.FAILED:
            if existing.title != title and not chatbot.documents.filter(title=title).exists():
                existing.title = title
                existing.save(update_fields=["title", "updated"])
            return existing, "unchanged"
        outcome = "updated"
        # A previous version may have chunks and nodes (or a failed job left some): remove them first.
        document.purge_first = True
    document.filename = filename[:255]
    document.file_type = file_type
    document.size_bytes = size
    document.content_hash = digest
    document.status = Document.Status.QUEUED
    document.chunk_size, document.chunk_overlap = current.chunk_size, current.chunk_overlap
    document.chunks_total = document.chunks_embedded = document.chunks_graphed = 0
    document.attempts = 0
    document.error_code = document.error_message = document.error_hint = ""
    document.started = document.finished = None
    document.save()
    DocumentSource.objects.update_or_create(document=document, defaults={"text": text})
    if queue:
        _queue(document)
    return document, outcome


def document_retry(document: Document) -> Document:
    """Queue a failed job again; it resumes where it stopped."""
    document_unstick(document)
    if document.status != Document.Status.FAILED:
        return document
    if not DocumentSource.objects.filter(document=document).exists():
        raise DocumentRejected("The text of this document is no longer available. Upload it again.")
    document.status = Document.Status.QUEUED
    document.save(update_fields=["status", "updated"])
    _queue(document)
    return document


def document_delete(document: Document) -> None:
    """Remove the document's vectors and graph nodes, then the document. If a component fails, the document
    is kept (so nothing is orphaned) and ComponentFailed says why."""
    stack = resolve_stack(document.chatbot)
    chatbot_id, doc_id = document.chatbot_id, str(document.id)
    if document.chunks_embedded or document.purge_first or document.status != Document.Status.QUEUED:
        with component(stack, "vector_store") as store:
            _ignore_missing(lambda: store.delete_document(chatbot_id, doc_id))
        with component(stack, "graph") as graph:
            _ignore_missing(lambda: graph.delete_document(chatbot_id, doc_id))
    document.delete()


def _ignore_missing(call) -> None:
    """Deleting from a table or graph that was never created is not an error."""
    try:
        call()
    except BackendError as error:
        if "does not exist" not in error.message and "not exist" not in error.message.lower():
            raise


# -- the job -----------------------------------------------------------------------------------------------

STALLED_MESSAGE = ("Ingestion stopped making progress (nothing was recorded for {minutes} minutes): the worker "
                   "running it probably stopped.")
STALLED_HINT = "Retry: the job resumes after the last chunk it stored."


def _stalled(queryset) -> int:
    """Mark failed, with Retry, the jobs in `queryset` still `running` without progress for
    INGESTION_STALL_SECONDS (a worker killed where Celery could not notice: the whole machine, a lost broker)."""
    now = timezone.now()
    minutes = max(1, round(settings.INGESTION_STALL_SECONDS / 60))
    return queryset.filter(status=Document.Status.RUNNING,
                           updated__lt=now - timedelta(seconds=settings.INGESTION_STALL_SECONDS)).update(
        status=Document.Status.FAILED, error_code="timeout", error_message=STALLED_MESSAGE.format(minutes=minutes),
        error_hint=STALLED_HINT, finished=now, updated=now)


def document_unstick(document: Document) -> Document:
    """The document, marked failed first if its job stalled."""
    if document.status == Document.Status.RUNNING and _stalled(Document.objects.filter(pk=document.pk)):
        document.refresh_from_db()
    return document


def _ingest_kinds(chatbot: Chatbot) -> tuple[str, ...]:
    """The components an ingestion job calls."""
    return ("embeddings", "vector_store", "graph", "llm") if chatbot.entity_extraction == "llm" else \
        ("embeddings", "vector_store", "graph")

class DocumentGone(Exception):
    """The document was deleted while its job ran."""


def _fail(document: Document, failure: ComponentFailed | DocumentRejected) -> None:
    if isinstance(failure, ComponentFailed):
        code, message, hint = failure.code, str(failure), failure.hint
        failure_record(document.chatbot, failure, "adding a document")
    else:
        code, message, hint = "config", str(failure), ""
    _record(document, status=Document.Status.FAILED, error_code=code, error_message=message, error_hint=hint,
            finished=timezone.now())


def _record(document: Document, **fields) -> int:
    for name, value in fields.items():
        setattr(document, name, value)
    # A plain UPDATE: the row may have been deleted meanwhile.
    return Document.objects.filter(pk=document.pk).update(**fields, updated=timezone.now())


def _progress(document: Document, **fields) -> None:
    if not _record(document, **fields):
        raise DocumentGone(str(document.id))


def document_ingest(document_id) -> Document:
    """Run (or resume) a document's ingestion job. Records progress and the outcome on the Document; raises
    ComponentFailed after recording it, so the Celery task can decide to retry; ComponentBusy (nothing
    recorded) while another job holds one of the customer's components (byoi.access.component_slots);
    SoftTimeLimitExceeded after recording that the job ran out of time."""
    document = Document.objects.select_related("chatbot__account__plan").get(pk=document_id)
    if document.status == Document.Status.DONE:
        return document
    source = DocumentSource.objects.filter(document=document).first()
    if source is None:
        _fail(document, DocumentRejected("The text of this document is no longer available. Upload it again."))
        return document
    try:
        stack = resolve_stack(document.chatbot)
    except ComponentFailed as failure:
        _fail(document, failure)
        raise
    with component_slots(stack, _ingest_kinds(document.chatbot)) as free:
        if not free:
            raise ComponentBusy(document.id)
        return _job(document, stack, source.text)


def _job(document: Document, stack, text: str) -> Document:
    _progress(document, status=Document.Status.RUNNING, attempts=document.attempts + 1, started=timezone.now(),
              error_code="", error_message="", error_hint="")
    try:
        _ingest(document, text)
    except DocumentGone:
        _clean_up_after_delete(document)
        return document
    except (ComponentFailed, DocumentRejected) as failure:
        _fail(document, failure)
        if isinstance(failure, ComponentFailed):
            raise
        return document
    except SoftTimeLimitExceeded:
        minutes = max(1, round(settings.INGESTION_SOFT_TIME_LIMIT / 60))
        _record(document, status=Document.Status.FAILED, error_code="timeout",
                error_message=f"Ingestion ran longer than {minutes} minutes and was stopped.",
                error_hint="Retry: the job resumes after the last chunk it stored.", finished=timezone.now())
        raise
    except Exception as error:
        # A bug, not a component: say so plainly, keep the staged text so the job can be retried.
        log.exception("Ingestion of document %s failed", document.id)
        _record(document, status=Document.Status.FAILED, error_code="unavailable",
                error_message=f"Ingestion stopped on an unexpected error ({type(error).__name__}).",
                error_hint="Retry; if it fails again, contact support.", finished=timezone.now())
        return document
    if not _record(document, status=Document.Status.DONE, finished=timezone.now()):
        _clean_up_after_delete(document)
        return document
    DocumentSource.objects.filter(document=document).delete()
    _worked(document.chatbot, stack)
    return document


def _worked(chatbot: Chatbot, stack) -> None:
    """The job reached the stores: components shown failing on the chatbot page turn green again."""
    try:
        component_success_record(chatbot, stack, ["embeddings", "vector_store", "graph"], "adding a document")
    except Exception:  # noqa: BLE001 - noting a recovery must never fail a finished job
        log.exception("Could not note the recovery of chatbot %s", chatbot.id)


def _clean_up_after_delete(document: Document) -> None:
    """The document was deleted while this job wrote to the stores: remove what the job wrote after the delete."""
    try:
        stack = resolve_stack(document.chatbot)
        with component(stack, "vector_store") as store:
            _ignore_missing(lambda: store.delete_document(document.chatbot_id, str(document.id)))
        with component(stack, "graph") as graph:
            _ignore_missing(lambda: graph.delete_document(document.chatbot_id, str(document.id)))
    except ComponentFailed as failure:
        log.warning("Chunks of deleted document %s may remain: %s", document.id, failure.code)


def _ingest(document: Document, text: str) -> None:
    chatbot = document.chatbot
    stack = resolve_stack(chatbot)
    doc_id = str(document.id)
    pieces = chunk_text(text, document.chunk_size, document.chunk_overlap)
    if document.chunks_total != len(pieces):
        _progress(document, chunks_total=len(pieces))
    if document.purge_first:
        with component(stack, "vector_store") as store:
            _ignore_missing(lambda: store.delete_document(chatbot.id, doc_id))
        with component(stack, "graph") as graph:
            _ignore_missing(lambda: graph.delete_document(chatbot.id, doc_id))
        _progress(document, purge_first=False, chunks_embedded=0, chunks_graphed=0)
    with component(stack, "embeddings") as embedder:
        dimensions = embedder.dimensions
    provision_once(stack, "vector_store", chatbot.id, dimensions)
    meta = {"title": document.title}
    writer = _GroupWriter(stack, "vector_store", lambda store, chunks: store.upsert(chatbot.id, chunks),
                          document, "chunks_embedded")
    for start in range(document.chunks_embedded, len(pieces), EMBED_BATCH):
        batch = pieces[start:start + EMBED_BATCH]
        with component(stack, "embeddings") as embedder:
            vectors = embedder.embed(batch)
            if len(vectors) != len(batch) or any(len(v) != dimensions for v in vectors):
                raise BackendError("dimension_mismatch", f"The embeddings endpoint returned vectors that are not "
                                                         f"{dimensions} numbers long.")
        writer.add([Chunk(id=f"{doc_id}:{start + i}", document_id=doc_id, ordinal=start + i, text=piece,
                          embedding=vector, metadata=meta)
                    for i, (piece, vector) in enumerate(zip(batch, vectors, strict=True))], start + len(batch))
    writer.flush()
    provision_once(stack, "graph", chatbot.id)
    use_llm = chatbot.entity_extraction == "llm"
    # One graph query per group (bounded in size by the backend); a chunk in which nothing was found gets no
    # node, as before, but counts as graphed.
    writer = _GroupWriter(stack, "graph", lambda graph, chunks: graph.upsert_many(chatbot.id, chunks),
                          document, "chunks_graphed")
    for ordinal in range(document.chunks_graphed, len(pieces)):
        piece = pieces[ordinal]
        if use_llm:
            with component(stack, "llm") as llm:
                entities, relations = extraction.extract_llm(llm, piece)
        else:
            entities, relations = extraction.extract_rules(piece)
        found = [GraphChunk(chunk_id=f"{doc_id}:{ordinal}", document_id=doc_id, entities=entities,
                            relations=relations)] if entities else []
        writer.add(found, ordinal + 1)
    writer.flush()


class _GroupWriter:
    """Writes a job's chunks to one of the stack's stores in groups — up to UPSERT_MAX_CHUNKS chunks at once, or
    whatever came in UPSERT_MAX_WAIT seconds — and records `counter` (the chunks done) after each write, so a
    retry resumes after the last chunk really stored (the running job's progress, which the stall check reads)."""

    def __init__(self, stack, kind: str, write, document: Document, counter: str):
        self.stack, self.kind, self.write = stack, kind, write
        self.document, self.counter = document, counter
        self.pending: list = []
        self.done = self.recorded = getattr(document, counter)
        self.since = time.monotonic()

    def add(self, items: list, done: int) -> None:
        """`items` to write for the chunks before ordinal `done` (a chunk may have none)."""
        self.pending.extend(items)
        self.done = done
        if self.done - self.recorded >= UPSERT_MAX_CHUNKS or time.monotonic() - self.since >= UPSERT_MAX_WAIT:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with component(self.stack, self.kind) as backend:
                self.write(backend, self.pending)
            self.pending = []
        if self.done > self.recorded:
            _progress(self.document, **{self.counter: self.done})
            self.recorded = self.done
        self.since = time.monotonic()


def document_get_for_user(user, chatbot_id, document_id) -> Document:
    from .services import chatbot_get_for_user

    chatbot = chatbot_get_for_user(user, chatbot_id)
    try:
        document = chatbot.documents.select_related("chatbot__account__plan").get(pk=document_id)
    except (Document.DoesNotExist, ValueError):
        raise NotFound("No such document") from None
    return document_unstick(document)

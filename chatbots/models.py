import uuid

from django.db import models
from django.utils.text import slugify
from django_cryptography.fields import encrypt

from wizchat.models import Account


class Chatbot(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="chatbots")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=120)
    instructions = models.TextField(
        blank=True,
        max_length=10_000,
        help_text="How the chatbot should answer: tone, scope, what to refuse.",
    )
    byoi_enabled = models.BooleanField(
        default=False, help_text="Use the chatbot's enabled BYOI components instead of WizChat's defaults."
    )
    # 700 characters stay under the default MiniLM's 256-token window, so no chunk is cut short when embedded.
    chunk_size = models.PositiveIntegerField(
        default=700, help_text="Characters per chunk when a document is split for embedding."
    )
    chunk_overlap = models.PositiveIntegerField(
        default=100, help_text="Characters shared by consecutive chunks, so a sentence cut in two is still found."
    )
    entity_extraction = models.CharField(
        max_length=10,
        choices=[("rules", "Rules (proper nouns and co-occurrence)"), ("llm", "The chatbot's LLM")],
        default="rules",
        help_text="How entities and relations for the knowledge graph are found in documents.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["account", "slug"], name="chatbot_slug_per_account")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = self._unique_slug()
        super().save(*args, **kwargs)

    def _unique_slug(self) -> str:
        base = slugify(self.name)[:100] or "chatbot"
        slug, n = base, 2
        while Chatbot.objects.filter(account_id=self.account_id, slug=slug).exclude(pk=self.pk).exists():
            slug, n = f"{base}-{n}", n + 1
        return slug


class Document(models.Model):
    """A document of a chatbot and its ingestion job. The text itself is never kept here: it lives in the
    chatbot's vector store (the customer's own with BYOI); until ingestion completes it is staged,
    encrypted, in DocumentSource so that a failed job can be retried and resumed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Ingesting"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=255)
    filename = models.CharField(max_length=255, blank=True)
    file_type = models.CharField(max_length=10, blank=True, help_text="txt, md, html, pdf or paste")
    size_bytes = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    # The ingestion job.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    chunk_size = models.PositiveIntegerField(default=700)
    chunk_overlap = models.PositiveIntegerField(default=100)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_embedded = models.PositiveIntegerField(default=0, help_text="Chunks upserted into the vector store")
    chunks_graphed = models.PositiveIntegerField(default=0, help_text="Chunks whose entities are in the graph")
    purge_first = models.BooleanField(default=False, help_text="Remove a previous version's vectors and nodes")
    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    error_hint = models.TextField(blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["chatbot", "title"], name="document_title_per_chatbot")]

    def __str__(self) -> str:
        return self.title

    @property
    def finished_state(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def progress(self) -> int:
        """Percent done: embedding+upsert is the first half of the work, the graph the second."""
        if self.status == self.Status.DONE:
            return 100
        if not self.chunks_total:
            return 0
        return min(99, int(50 * (self.chunks_embedded + self.chunks_graphed) / self.chunks_total))


class DocumentSource(models.Model):
    """The parsed text of a document while its ingestion job is unfinished, encrypted at rest.
    Deleted as soon as the chunks are in the vector store and the graph."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="source")
    text = encrypt(models.TextField())

    def __repr__(self) -> str:
        return f"<DocumentSource {self.document_id}>"

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
    allowed_origins = models.JSONField(
        default=list, blank=True,
        help_text="Websites (scheme://host[:port]) where the widget may appear; empty means nowhere.",
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


class ApiKey(models.Model):
    """A key to the chatbot's public API. Only its prefix (to find it and to show it) and a keyed hash are kept:
    the key itself is shown once, at creation (chatbots.apikeys)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    hashed = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def __repr__(self) -> str:  # never the hash
        return f"<ApiKey {self.prefix} chatbot={self.chatbot_id}>"


class Deployment(models.Model):
    """Where a chatbot runs as a standalone runtime (wizchat.runtime), fed by its CUSTOM_* and WIZCHAT_*
    variables. `fingerprint` is a keyed digest of the variables it was started with (never the values): when
    the chatbot's current variables digest differently, the deployment is out of date."""

    class Target(models.TextChoices):
        LOCAL = "local", "This machine"
        KUBERNETES = "kubernetes", "Kubernetes"

    class Status(models.TextChoices):
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chatbot = models.OneToOneField(Chatbot, on_delete=models.CASCADE, related_name="deployment")
    target = models.CharField(max_length=12, choices=Target.choices, default=Target.LOCAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STARTING)
    reason = models.TextField(blank=True, help_text="Why it failed or stopped, in words for the customer")
    url = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True, help_text="Local target: the stable port")
    fingerprint = models.CharField(max_length=64, blank=True)
    carries = models.JSONField(default=dict, help_text="{kind: 'custom'|'default'}: labels only, never values")
    generation = models.PositiveIntegerField(default=1, help_text="Bumped by every deploy: the supervisor "
                                                                  "replaces runtimes of older generations")
    running_generation = models.PositiveIntegerField(default=0)
    stale_reason = models.CharField(max_length=200, blank=True,
                                    help_text="Set when something the fingerprint cannot see changed "
                                              "(the encryption key was rotated)")
    deployed = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    def __repr__(self) -> str:
        return f"<Deployment {self.chatbot_id} {self.target} {self.status}>"


class DeploymentSnapshot(models.Model):
    """The environment a local deployment's runtime was built with, saved at deploy time so that a runtime
    restarted later (after a crash, or by the next `make run`) runs what was deployed rather than the chatbot's
    current settings (chatbots.deployments.deployment_runtime_env). Secrets included, so the whole value is
    encrypted with the BYOI key ring (rotate_byoi_key re-encrypts it); never shown in the admin, a page or a log.
    A Kubernetes deployment keeps its environment in its Secret and ConfigMap instead.

    A table of its own rather than a column of Deployment: a value that no key opens any more must fail only the
    restart that needs it, not every page that lists the deployment."""

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, primary_key=True,
                                      related_name="snapshot")
    generation = models.PositiveIntegerField(help_text="The deploy this environment belongs to")
    environment = encrypt(models.TextField(help_text="The variables as JSON"))
    updated = models.DateTimeField(auto_now=True)

    def __repr__(self) -> str:  # never the environment
        return f"<DeploymentSnapshot {self.deployment_id} generation={self.generation}>"

    def __str__(self) -> str:
        return f"Environment of deployment {self.deployment_id} (generation {self.generation})"


class RuntimeUsageCursor(models.Model):
    """How far the platform has counted one runtime's usage reports (chatbots.runtime_usage): a runtime numbers
    its report batches 1, 2, 3 … under an instance id of its state folder and resends a batch until it is
    answered, so a batch at or below `seq` was applied already and is not counted again."""

    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="usage_cursors")
    instance = models.UUIDField(help_text="The runtime's state folder (a new one starts at seq 1)")
    seq = models.PositiveBigIntegerField(default=0, help_text="The last batch counted")
    messages = models.PositiveBigIntegerField(default=0, help_text="Questions counted from this instance, in all")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chatbot", "instance"], name="one_cursor_per_runtime")]

    def __repr__(self) -> str:
        return f"<RuntimeUsageCursor {self.chatbot_id} {self.instance} seq={self.seq}>"


class RuntimeReadiness(models.Model):
    """The last readiness summary one runtime instance of a deployment reported (chatbots.runtime_readiness): per
    component only ok and the taxonomy's code — never a host, a message or a secret — so that a Kubernetes
    deployment, whose pods the platform cannot reach, names the component a new pod waits for. Only the
    deployment's current generation is kept, and only instances heard from in the last minute."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="readiness")
    instance = models.UUIDField(help_text="The runtime's state folder (one per pod), not its host name")
    generation = models.PositiveIntegerField(help_text="The deploy the runtime was started by")
    ready = models.BooleanField()
    components = models.JSONField(default=dict, help_text="{kind: {ok, code}}: the taxonomy's codes only")
    reported = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["deployment", "instance"], name="one_readiness_per_runtime")]

    def __repr__(self) -> str:
        return f"<RuntimeReadiness {self.deployment_id} {self.instance} generation={self.generation}>"

import uuid

from django.db import models
from django.utils.text import slugify

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
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.title

from django.db import models
from django_cryptography.fields import encrypt


class Outbox(models.Model):
    """A chat message whose conversations database could not be reached when it was written.

    A Celery retry delivers it later; the message id is the idempotency key, so a message delivered twice
    is stored once. The content is encrypted at rest and the row is deleted once delivered."""

    message_id = models.CharField(max_length=64, unique=True)
    chatbot = models.ForeignKey("chatbots.Chatbot", on_delete=models.CASCADE, related_name="outbox")
    payload = encrypt(models.TextField(help_text="The Message as JSON"))
    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_attempt = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]

    def __repr__(self) -> str:  # never the content
        return f"<Outbox {self.message_id} chatbot={self.chatbot_id} attempts={self.attempts}>"


class MessageUsage(models.Model):
    """Questions asked per account per month, for the plan's message quota (counts only, never content)."""

    account = models.ForeignKey("wizchat.Account", on_delete=models.CASCADE, related_name="message_usage")
    month = models.DateField(help_text="First day of the month")
    messages = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "month"], name="one_usage_row_per_month")]

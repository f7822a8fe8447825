"""The demo account's sample chatbot, so a new user can ask a question straight away."""

from .models import Chatbot

SAMPLE_NAME = "WizChat Helper"


def demo_seed_chatbot(account, out=None) -> Chatbot:
    chatbot = Chatbot.objects.filter(account=account, name=SAMPLE_NAME).first()
    if chatbot is None:
        chatbot = Chatbot.objects.create(
            account=account,
            name=SAMPLE_NAME,
            instructions="Answer questions about WizChat and BYOI briefly, citing the sample document.",
        )
        if out:
            out.write(f"Created sample chatbot “{SAMPLE_NAME}”")
    return chatbot

"""The demo account's sample chatbot with a sample document, so a new user can ask a question straight away.

The seed runs before the Celery worker starts (wizchat/run.py), so the sample document is ingested here,
synchronously, with the same code the worker runs."""

from .models import Chatbot, Document

SAMPLE_NAME = "WizChat Helper"
SAMPLE_TITLE = "About WizChat and BYOI"
SAMPLE_QUESTION = "Which plans include BYOI?"

SAMPLE_DOCUMENT = """\
# WizChat and BYOI (Bring Your Own Infrastructure)

WizChat is a hosted chatbot platform. A WizChat chatbot answers questions from the documents you give it: \
each document is split into chunks, the chunks are embedded into a vector store, and the entities they \
mention are linked in a knowledge graph (GraphRAG). The answer comes from a language model (LLM) and cites \
its sources.

## What BYOI is
BYOI (Bring Your Own Infrastructure) lets you connect your own infrastructure components for complete control \
over your chatbot's backend. BYOI replaces WizChat's default infrastructure with your own, component by \
component:
- Custom LLM: use your own OpenAI-compatible endpoint, such as Azure OpenAI, AWS Bedrock (via proxy), \
Google Vertex AI (via proxy), Ollama, vLLM or LocalAI.
- Custom Embeddings: use your own embedding service for document vectorization, such as Azure OpenAI \
Embeddings, Cohere Embeddings or Voyage AI. The default dimensions are 3072.
- Custom Vector Store: use your own PostgreSQL database (PostgreSQL 14+) with the pgvector extension for \
document storage. WizChat creates the required tables automatically on first use.
- Custom FalkorDB: use your own FalkorDB instance (FalkorDB 4.0+) for GraphRAG capabilities.
- Custom Conversations Database: use your own PostgreSQL for storing chat conversations.

## Who BYOI is for
BYOI is ideal for enterprise customers with data residency requirements, organizations with existing AI \
infrastructure investments, teams requiring specific model configurations, and companies with compliance \
needs requiring self-hosted components.

## Plans
BYOI is available on the Pro, Pro+, Business and Enterprise plans. The Free plan does not include BYOI.

## Setting up BYOI
BYOI is configured during chatbot creation. Go to Dashboard > Chatbots, click "Create New Chatbot" and find \
the BYOI panel. Toggle "Enable BYOI", then for each component you want to customize fill in the connection \
details and click "Test Connection" to validate them. After creating the chatbot, check that all BYOI \
components show green checkmarks, test the chatbot with a sample query, and verify that data flows to your \
infrastructure.

## Security
All credentials are encrypted at rest, stored in isolated storage, and never shown in the interface after \
saving. API keys are never logged. Connections use SSL/TLS when available. Use dedicated service accounts \
with minimal permissions, never production database admin credentials, and rotate credentials regularly.

## Troubleshooting
A connection timeout means: check firewall rules, verify the host is reachable and confirm the port is open. \
Authentication failed means: verify the API key or password, check user permissions and confirm the account \
is active. An SSL error means: match the SSL mode with the server configuration and verify the certificate.

## Moving from BYOI
Disable the custom components and WizChat uses its default infrastructure again. Data in your custom \
infrastructure is not migrated.
"""


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
    demo_seed_document(chatbot, out)
    return chatbot


def demo_seed_document(chatbot: Chatbot, out=None) -> Document:
    """Add and ingest the sample document (idempotent: an up-to-date document is left alone)."""
    from byoi.access import ComponentFailed

    from .ingestion import document_add, document_ingest

    document, outcome = document_add(chatbot, title=SAMPLE_TITLE, text=SAMPLE_DOCUMENT, queue=False)
    if document.status == Document.Status.DONE:
        return document
    try:
        document = document_ingest(document.id)
    except ComponentFailed as failure:
        if out:
            out.write(f"The sample document could not be ingested yet: {failure} {failure.hint} "
                      "(retry it from the chatbot page)")
        document.refresh_from_db()
        return document
    if out:
        out.write(f"Sample document “{SAMPLE_TITLE}” {outcome} and ingested ({document.chunks_total} chunks); "
                  f"try asking: {SAMPLE_QUESTION}")
    return document

def knowledge_context(request, chatbot) -> dict:
    """Context for the knowledge, chat, history and data-location sections of the chatbot page."""
    return {}

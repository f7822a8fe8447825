def status_context(request, chatbot) -> dict:
    """Context for byoi/partials/_status_panel.html on the chatbot page."""
    return {}

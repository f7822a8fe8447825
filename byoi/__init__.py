"""Bring Your Own Infrastructure: per-chatbot components that replace WizChat's defaults.

`byoi.resolve(chatbot)` is the one entry point every caller uses to reach a chatbot's five components.
"""


def resolve(chatbot):
    from .resolver import resolve as _resolve

    return _resolve(chatbot)


__all__ = ["resolve"]

"""Public module path for the chat model, as in the partner packages (``langchain_openai.chat_models``)."""

from langchain_nebo._chat_models import ChatNebo

__all__ = ["ChatNebo"]

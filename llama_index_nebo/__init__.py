"""LlamaIndex integration for Nebo: the ``Nebo`` LLM, ``NeboEmbedding``, and budget handlers.

Both models run on ``nebo_core`` (one retry layer, budget policy, usage records); the
handlers total what every call cost. Errors are ``nebo_core``'s typed errors, re-exported
here so a LlamaIndex program can catch ``NeboBudgetExhausted`` without a second import.
"""

from llama_index_nebo._embedding import NeboEmbedding
from llama_index_nebo._events import NeboUsageEvent
from llama_index_nebo._handlers import NeboBudgetCallbackHandler, NeboBudgetEventHandler
from llama_index_nebo._llm import Nebo
from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBudgetExhausted,
    NeboError,
    NeboRateLimited,
)

__all__ = [
    "Nebo",
    "NeboAuthenticationError",
    "NeboBudgetCallbackHandler",
    "NeboBudgetEventHandler",
    "NeboBudgetExhausted",
    "NeboEmbedding",
    "NeboError",
    "NeboRateLimited",
    "NeboUsageEvent",
]

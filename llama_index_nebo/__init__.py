"""LlamaIndex integration for Nebo: the ``Nebo`` LLM, ``NeboEmbedding``, and budget handlers.

Both models run on ``nebo_core`` (one retry layer, budget policy, usage records); the
handlers total what every call cost. Errors are ``nebo_core``'s typed errors, every one of
them re-exported here so a LlamaIndex program can catch ``NeboBudgetExhausted`` without a
second import. The same classes are importable the LlamaIndex way, from
``llama_index.llms.nebo`` and ``llama_index.embeddings.nebo``.
"""

from llama_index_nebo._embedding import NeboEmbedding
from llama_index_nebo._events import NeboUsageEvent
from llama_index_nebo._handlers import NeboBudgetCallbackHandler, NeboBudgetEventHandler
from llama_index_nebo._landing import NeboFunctionAgent
from llama_index_nebo._llm import Nebo
from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboBudgetStoreUnavailable,
    NeboConfigurationError,
    NeboConnectionError,
    NeboContextLengthError,
    NeboError,
    NeboRateLimited,
    NeboStoreError,
    NeboStoreStateLost,
    NeboStreamError,
    NeboStreamTruncated,
    NeboTimeoutError,
    NeboUpstreamError,
)

__all__ = [
    "Nebo",
    "NeboAuthenticationError",
    "NeboBadRequestError",
    "NeboBudgetCallbackHandler",
    "NeboBudgetEventHandler",
    "NeboBudgetExhausted",
    "NeboBudgetStoreUnavailable",
    "NeboConfigurationError",
    "NeboConnectionError",
    "NeboContextLengthError",
    "NeboEmbedding",
    "NeboError",
    "NeboFunctionAgent",
    "NeboRateLimited",
    "NeboStoreError",
    "NeboStoreStateLost",
    "NeboStreamError",
    "NeboStreamTruncated",
    "NeboTimeoutError",
    "NeboUpstreamError",
    "NeboUsageEvent",
]

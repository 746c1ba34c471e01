"""Public module path for the embeddings, as in the partner packages (``langchain_openai.embeddings``)."""

from langchain_nebo._embeddings import NeboEmbeddings

__all__ = ["NeboEmbeddings"]

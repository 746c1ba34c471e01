"""LlamaIndex integration for Nebo."""

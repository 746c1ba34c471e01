"""LangChain integration for Nebo."""

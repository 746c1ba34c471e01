"""``from llama_index.llms.nebo import Nebo``: LlamaIndex's layout for ``llama_index_nebo.Nebo``.

A portion of the ``llama_index`` namespace package (no ``__init__.py`` above this one, as in
llama-index-core and its partner packages); it only re-exports from ``llama_index_nebo``.
"""

from llama_index_nebo import Nebo

__all__ = ["Nebo"]

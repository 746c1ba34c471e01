"""Deterministic embeddings without a model download: hashed word and character n-gram features.

Each text becomes a sparse bag of features (words, word bigrams, and character
trigrams of each word), hashed into the requested width with a sign bit (the
"hashing trick"), then scaled to unit length. Texts that share words share
coordinates, so cosine similarity tracks lexical overlap and retrieval over these
vectors really works. ``base64`` output is little-endian float32, as OpenAI sends it
(the openai SDK asks for base64 by default and decodes it that way).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
import struct
from collections.abc import Sequence

from nebo_emulator._text import STOPWORDS, count_tokens

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_WORD_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.25


def _features(text: str | Sequence[int]) -> dict[str, float]:
    if not isinstance(text, str):
        # Token-id input (what some clients send after tokenizing): each id is a "word".
        return {f"t:{t}": _WORD_WEIGHT for t in text} or {"<empty>": 1.0}
    feats: dict[str, float] = {}
    tokens = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in tokens if w not in STOPWORDS] or tokens
    for word in content:
        feats[f"w:{word}"] = feats.get(f"w:{word}", 0.0) + _WORD_WEIGHT
        padded = f"<{word}>"
        for i in range(len(padded) - 2):
            gram = f"c:{padded[i : i + 3]}"
            feats[gram] = feats.get(gram, 0.0) + _TRIGRAM_WEIGHT
    for left, right in itertools.pairwise(content):
        feats[f"b:{left} {right}"] = feats.get(f"b:{left} {right}", 0.0) + _BIGRAM_WEIGHT
    return feats or {"<empty>": 1.0}


def embed(text: str | Sequence[int], dimensions: int) -> list[float]:
    """A deterministic unit vector of ``dimensions`` floats for ``text``."""
    vector = [0.0] * dimensions
    for feature, weight in _features(text).items():
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:7], "little") % dimensions
        vector[bucket] += weight if digest[7] & 1 else -weight
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def encode_base64(vector: Sequence[float]) -> str:
    """``vector`` as base64 of little-endian float32, OpenAI's ``encoding_format="base64"``."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def input_tokens(text: str | Sequence[int]) -> int:
    """Tokens billed for one input: the id count for token arrays, the approximation for text."""
    return len(text) if not isinstance(text, str) else max(count_tokens(text), 1)

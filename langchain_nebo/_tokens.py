"""Token counts that work offline: tiktoken where its encoding is already cached, else an estimate.

tiktoken downloads its tables on first use, and offline that fails (or hangs behind a firewall).
So tiktoken is used only when the encoding's file is already in tiktoken's cache
(``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR`` or the temp dir's ``data-gym-cache``) with the
right hash: then ``tiktoken.get_encoding`` reads it and never touches the network. Otherwise
:func:`estimate` counts. Nothing here ever downloads.

The estimate mimics ``o200k_base``: text is cut into the pieces o200k's pre-tokenizer makes
(words with one leading space or punctuation character, split at camelCase; numbers three
digits at a time; punctuation runs; whitespace runs), and each piece is priced by a rule
fitted per script (an ASCII word of up to 10 letters is one token; Chinese characters about
0.7 tokens each; Cyrillic about one token per 2.7 letters; a run of one repeated ASCII
punctuation character about one token; most other symbols a token each). Measured against
tiktoken's ``o200k_base`` on 150 held-out texts of about 1,500 characters each (English
prose, Python/C/JavaScript/Rust code, JSON, and Russian, Ukrainian, Bulgarian, Serbian,
Greek, Armenian, Georgian, Arabic, Hebrew, Persian, Hindi, Marathi, Bengali, Tamil,
Malayalam, Thai, Chinese, Japanese and Korean text): mean absolute error 6.1 % per text
(prose 5.0 %, code 6.3 %, JSON 5.6 %, non-Latin 7.7 %), 90 % of texts within 14 %, worst
texts +29 % and -23 %; summed over the corpus, within 0.5 %. Text that tokenizes badly for
its length (random strings, base64, lists of short non-words) is undercounted, by up to 58 %
in the fitting set. ``docs/langchain.md`` tells how it was measured.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_ENCODING = "o200k_base"
"""What OpenAI's current models use, and the closest public proxy for Nebo's other upstreams."""

IMAGE_TOKENS = 765
"""Counted per image part: OpenAI's price of a 1024x1024 image at high detail (offline, an
image's real size is not fetched)."""

TOKENS_PER_MESSAGE = 3
"""OpenAI's chat format overhead per message (and once more to prime the reply)."""

ESTIMATE_MAX_OVERCOUNT = 0.35
"""The estimate exceeded o200k_base by at most 29 % on any text of the corpus above: a text
whose estimate is over ``limit * (1 + ESTIMATE_MAX_OVERCOUNT)`` is over ``limit``."""

# tiktoken caches each file under the SHA-1 of its URL and checks its SHA-256 on load: a file
# that fails the check would be downloaded again, so it is checked here first.
_BLOBS = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], Any] = {}


def _cache_dir() -> str | None:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        directory = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        directory = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        directory = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return directory or None  # "" turns tiktoken's cache off: every load would download


def encoding(name: str) -> Any | None:
    """The tiktoken encoding ``name`` if it loads from the local cache, else ``None`` (never downloads)."""
    blob = _BLOBS.get(name)
    directory = _cache_dir()
    if blob is None or directory is None:
        return None
    path = os.path.join(directory, hashlib.sha1(blob[0].encode()).hexdigest())
    key = (name, path)
    if key in _LOADED:
        return _LOADED[key]
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(name, path, blob[1])
    return _LOADED[key]


def _load(name: str, path: str, sha256: str) -> Any | None:
    try:
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != sha256:
                return None
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception:  # no tiktoken, an unreadable file, a tiktoken that changed: estimate instead
        return None


def encoding_name(model: str | None, default: str = DEFAULT_ENCODING) -> str:
    """tiktoken's encoding name for an OpenAI ``model`` name (``default`` when it is not one)."""
    if not model:
        return default
    try:
        from tiktoken.model import encoding_name_for_model

        return encoding_name_for_model(model)
    except Exception:
        return default


# --- the estimate ----------------------------------------------------------------------------

# Combining marks (accents, Indic vowel signs, Arabic and Hebrew points) continue a word, as in
# o200k's \p{M}; Python's \w leaves them out.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
    "\u0900-\u0dff\u0e00-\u0e7f\u0f00-\u0fff\u1000-\u109f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff"
    "\ufe20-\ufe2f"
)
_LETTER = rf"(?:[^\W\d_]|[{_MARKS}])"
_PIECE = re.compile(
    rf"(?P<word>[^\r\n\w]?{_LETTER}+)"
    r"|(?P<num>\d{1,3})"
    r"|(?P<punct> ?[^\s\w]+[\r\n/]*)"
    r"|_+|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _script_rate(first: str) -> tuple[float, float]:
    """``(base, letters per token)`` of a word by its first letter's script (fitted to o200k_base)."""
    o = ord(first)
    if 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or o >= 0x20000:
        return 0.7, 1.4  # Chinese characters, kana
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return 0.95, 2.2  # Hangul
    if 0x0400 <= o <= 0x052F:
        return 0.0, 2.7  # Cyrillic
    return 0.0, 2.5  # Greek, Arabic, Hebrew, Indic, Thai...


def _word(piece: str) -> float:
    word = piece if piece[0].isalpha() else piece[1:]
    if not word or ord(word[0]) >= 0x250:  # beyond Latin: a per-script rate
        base, rate = _script_rate(word[0] if word else piece[0])
        return max(1.0, base + len(word) / rate)
    tokens = 0.2 if len(word) < len(piece) and piece[0] != " " else 0.0
    for part in _CAMEL.split(word) if word.isascii() else (word,):
        tokens += 1 + max(0, len(part) - 10) / 1.4
    return tokens


def _punct(run: str) -> float:
    # BPE merges repeated ASCII characters ("-----" is one token, ") {" about two); most other
    # symbols (box drawing, arrows, quotes) are a token each, and repeats merge less.
    ascii_runs, other = 0, 0.0
    longest = 0
    for char, group in itertools.groupby(run):
        length = sum(1 for _ in group)
        if char.isascii():
            ascii_runs += 1
            longest = max(longest, length)
        else:
            other += 1 + (length - 1) / 3
    if ascii_runs == 0:
        return max(other, 1.0)
    if ascii_runs == 1:
        return other + 1 + max(0, longest - 8) / 16
    return other + max(1.0, 0.65 * ascii_runs - 0.2)


def estimate(text: str) -> int:
    """About how many ``o200k_base`` tokens ``text`` has (accuracy in the module docstring)."""
    total = 0.0
    for match in _PIECE.finditer(text):
        kind = match.lastgroup
        if kind == "word":
            total += _word(match.group())
        elif kind == "punct":
            total += _punct(match.group().strip())
        else:
            total += 1
    return max(math.ceil(total - 0.5), 1) if text else 0


def counter(encoding_name_: str) -> Callable[[str], int]:
    """A text -> tokens function: exact where the encoding is cached, else :func:`estimate`."""
    enc = encoding(encoding_name_)
    if enc is None:
        return estimate
    return lambda text: len(enc.encode(text, disallowed_special=()))


# --- messages --------------------------------------------------------------------------------


def count_messages(
    messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], count: Callable[[str], int]
) -> int:
    """Tokens of OpenAI-format ``messages`` (and ``tools``) the way OpenAI's cookbook counts them:
    each message's strings, 3 per message, 1 per name, 3 to prime the reply; an image part is
    :data:`IMAGE_TOKENS`; tool calls and tool definitions are counted as their JSON."""
    total = TOKENS_PER_MESSAGE
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += count(value) + (1 if key == "name" else 0)
            elif key == "content" and isinstance(value, list):
                total += sum(_part(part, count) for part in value)
            elif value is not None:
                total += count(json.dumps(value, default=str))
    if tools:
        total += count(json.dumps(list(tools), default=str))
    return total


def _part(part: Any, count: Callable[[str], int]) -> int:
    if isinstance(part, str):
        return count(part)
    if isinstance(part, dict) and part.get("type") == "image_url":
        return IMAGE_TOKENS
    if isinstance(part, dict) and isinstance(part.get("text"), str):
        return count(part["text"])
    return count(json.dumps(part, default=str))

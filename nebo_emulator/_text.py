"""Cheap, deterministic text tools: token counts, content words, sentences, extractive answers.

Token counts approximate a BPE tokenizer at about four characters a token; nothing
here needs tiktoken (which downloads its tables and fails offline). The extractive
answer picks the context sentences that share the most content words with the
question, which is enough for a retrieval pipeline's end-to-end test to mean something.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_STOP_TEXT = """a an and are as at be been but by can could did do does for from had has have how i if in into
is it its me my of on or our please should so than that the their them then there these they this to us was we
were what when where which who whom why will with would you your yours tell give show find use using"""
STOPWORDS = frozenset(_STOP_TEXT.split())

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def count_tokens(text: str) -> int:
    """Approximate BPE tokens in ``text`` (about four characters each; at least 1 when non-empty)."""
    return (len(text) + 3) // 4


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``, in order."""
    return [w.lower() for w in _WORD.findall(text)]


def stem(word: str) -> str:
    """A crude stem so that ``cities``/``city`` and ``runs``/``run`` meet."""
    for suffix, repl in (("ies", "y"), ("ing", ""), ("es", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + repl
    return word


def content_stems(text: str) -> set[str]:
    """Stems of the words in ``text`` that carry meaning (stopwords dropped)."""
    return {stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())}


def sentences(text: str) -> list[str]:
    """``text`` split into trimmed, non-empty sentences or lines."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def question_of(text: str) -> str:
    """The question inside a user message: its last sentence with a ``?``, else the whole message."""
    asked = [s for s in sentences(text) if s.endswith("?")]
    return asked[-1] if asked else text.strip()


def best_sentences(question: str, context: Iterable[str], *, limit: int = 2) -> list[str]:
    """The context sentences sharing the most content words with ``question``, in context order."""
    wanted = content_stems(question)
    pool: list[str] = []
    for chunk in context:
        for sentence in sentences(chunk):
            if sentence not in pool and sentence.strip() != question.strip():
                pool.append(sentence)
    stems = [content_stems(s) for s in pool]
    # Weight shared words by rarity (1/document frequency): the distinctive word decides, not "the".
    df = {w: sum(1 for s in stems if w in s) for w in wanted}
    scored = [(sum(1 / df[w] for w in wanted & s), -i, pool[i]) for i, s in enumerate(stems)]
    scored = [item for item in scored if item[0] > 0]
    if not scored:
        return []
    scored.sort(reverse=True)
    top = scored[0][0]
    chosen = [item for item in scored[:limit] if item[0] * 3 >= top * 2]
    chosen.sort(key=lambda item: -item[1])
    return [item[2] for item in chosen]


def extractive_answer(question: str, context: Sequence[str]) -> str:
    """A deterministic answer: the best-overlapping context sentences, or a plain acknowledgement."""
    picked = best_sentences(question, context)
    if picked:
        return " ".join(picked)
    if words(question)[:1] and words(question)[0] in {"hello", "hi", "hey", "greetings"}:
        return "Hello! I am the Nebo emulator. How can I help you today?"
    asked = " ".join(question.split())
    if len(asked) > 200:
        asked = asked[:197] + "..."
    return f"You asked: {asked} This is a deterministic answer from the Nebo emulator."


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` that counts as at most ``max_tokens`` tokens."""
    return text[: max(max_tokens, 0) * 4]


def apply_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop sequence (OpenAI omits the sequence), and whether one hit."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def split_pieces(text: str, size: int = 3) -> list[str]:
    """``text`` as stream deltas of about ``size`` words each; joined they give ``text`` back."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return ["".join(parts[i : i + size]) for i in range(0, len(parts), size)] or [text]

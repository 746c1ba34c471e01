"""What a call will cost before it is made: the amount a budget policy reserves against a cap.

An estimate is read from the request itself, then learned from what calls cost:

- prompt tokens: the UTF-8 size of the text the request sends (message contents, tool
  schemas, embeddings inputs) divided by :data:`BYTES_PER_TOKEN`, plus a few tokens of
  framing per message and :data:`IMAGE_TOKENS` per image. Three bytes a token is
  conservative: English prose runs about four characters a token, code and JSON about
  three, and a CJK character is three UTF-8 bytes and about one token. No tokenizer is
  needed, so the estimate costs microseconds and works offline;
- completion tokens: before any call to the model has been costed, the request's
  ``max_completion_tokens`` (or ``max_tokens``) when smaller than
  :data:`COLD_COMPLETION_TOKENS`, else that default; times ``n``;
- prices: the model's, from :mod:`nebo_core.models`; ``auto`` and models the table does
  not know at the most expensive chat model's prices (the most ``auto`` may route to);
- once calls to the model have been costed (the store's mean cost), a chat call reserves
  :data:`WARM_MARGIN` times that mean, or its own prompt when that alone costs more;
  never more than the request's ceiling (prompt plus ``max_completion_tokens`` at the
  output price). Embeddings calls have no completion: their prompt is their cost.

Every function here is pure: the policy passes the store's mean in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nebo_core.budget import CallKind
from nebo_core.models import MODELS, ModelSpec, get_model

BYTES_PER_TOKEN = 3
"""UTF-8 bytes counted as one prompt token (conservative for prose, code, JSON and CJK)."""
MESSAGE_TOKENS = 4
"""Framing tokens per chat message (role, separators)."""
IMAGE_TOKENS = 1_500
"""Tokens counted for one image part (a high-detail 1024x1024 image is about 765-1,100)."""
COLD_COMPLETION_TOKENS = 1_000
"""Completion tokens assumed before any call to the model has been costed."""
WARM_MARGIN = 1.25
"""Head-room over the observed mean cost of a model's calls."""


def _text_bytes(value: Any) -> int:
    """The UTF-8 size of the text in ``value`` (strings anywhere inside it; images counted apart)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    if isinstance(value, Mapping):
        if value.get("type") in ("image_url", "input_image", "image"):
            return IMAGE_TOKENS * BYTES_PER_TOKEN
        return sum(_text_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_bytes(v) for v in value)
    return 0


def prompt_tokens(kind: CallKind, body: Mapping[str, Any] | None) -> int:
    """An upper-leaning count of the prompt tokens ``body`` sends (0 without a body)."""
    if body is None:
        return 0
    if kind == "embedding":
        texts = body.get("input")
        if isinstance(texts, list) and texts and all(isinstance(t, int) for t in texts):
            return len(texts)  # already tokens
        if isinstance(texts, list) and texts and all(isinstance(t, list) for t in texts):
            return sum(len(t) for t in texts)
        return math.ceil(_text_bytes(texts) / BYTES_PER_TOKEN)
    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    size = _text_bytes(messages) + _text_bytes(body.get("tools")) + _text_bytes(body.get("response_format"))
    return math.ceil(size / BYTES_PER_TOKEN) + MESSAGE_TOKENS * count


def completion_limit(body: Mapping[str, Any] | None) -> int | None:
    """The request's own cap on completion tokens per choice (``None`` when it sets none)."""
    if body is None:
        return None
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def choices(body: Mapping[str, Any] | None) -> int:
    """The request's ``n`` (1 unless it asks for more)."""
    n = body.get("n") if body is not None else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def prices(kind: CallKind, model: str) -> tuple[int, int]:
    """Microdollars per 1M prompt and completion tokens; the dearest of ``kind`` when unknown."""
    spec: ModelSpec | None = get_model(model)
    if spec is not None and spec.kind == kind and spec.tier != "router":
        return spec.input_price, spec.output_price
    pool = [m for m in MODELS if m.kind == kind and m.tier != "router"]
    return max(m.input_price for m in pool), max(m.output_price for m in pool)


def _micro(tokens: int, price: int) -> int:
    return -(-tokens * price // 1_000_000)


def estimate_micro(
    kind: CallKind, model: str, body: Mapping[str, Any] | None, mean_micro: float | None = None
) -> int:
    """What to reserve for one call to ``model`` sending ``body`` (see the module docstring).

    ``mean_micro`` is the observed mean cost of the model's calls (``None`` before the first)."""
    input_price, output_price = prices(kind, model)
    prompt = _micro(prompt_tokens(kind, body), input_price)
    if kind == "embedding":
        return max(prompt, 1)
    limit = completion_limit(body)
    n = choices(body)
    if mean_micro is None:
        cold = COLD_COMPLETION_TOKENS if limit is None else min(limit, COLD_COMPLETION_TOKENS)
        return max(prompt + _micro(cold * n, output_price), 1)
    warm = max(math.ceil(mean_micro * WARM_MARGIN) * n, prompt)
    if limit is not None:
        warm = min(warm, prompt + _micro(limit * n, output_price))
    return max(warm, 1)

"""Response bodies and budget headers, shaped as the real server sends them.

Header names and formats follow nebo-api.md section 8 (``-Credits`` suffix, RFC 3339
resets, microdollars, credits in cents); ``/v1/usage`` follows section 7.1; ``/v1/models``
section 5; embeddings section 6 (the ``model`` field echoes the upstream OpenAI name). The emulator
spells these names itself rather than importing ``nebo_core.wire``: it is the independent
oracle the client is tested against, so a client-side typo must not be mirrored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nebo_core.models import MODELS, ModelSpec
from nebo_emulator._accounting import BudgetView, seconds_until
from nebo_emulator._clock import rfc3339
from nebo_emulator._generate import Choice, Generation

MODELS_CREATED = 1712100000


def budget_headers(view: BudgetView) -> list[tuple[str, str]]:
    """Every ``X-RateLimit-*`` and ``X-Budget-*`` header for the account state ``view``."""
    return [
        ("X-RateLimit-Session-Limit-Credits", str(view.session_limit)),
        ("X-RateLimit-Session-Remaining-Credits", str(view.session_remaining)),
        ("X-RateLimit-Session-Reset", rfc3339(view.session_reset)),
        ("X-RateLimit-Weekly-Limit-Credits", str(view.weekly_limit)),
        ("X-RateLimit-Weekly-Remaining-Credits", str(view.weekly_remaining)),
        ("X-RateLimit-Weekly-Reset", rfc3339(view.weekly_reset)),
        ("X-Budget-Free-Available", str(view.free)),
        ("X-Budget-Gift-Available", str(view.gift)),
        ("X-Budget-Credits-Cents", str(view.credits_cents)),
        ("X-Budget-Active-Pool", view.active_pool),
    ]


def usage(prompt_tokens: int, completion_tokens: int, cost_micro: int) -> dict[str, Any]:
    """A chat ``usage`` object with Nebo's ``cost_micro`` (nebo-api.md section 4.3)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost_micro": cost_micro,
    }


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in choice.tool_calls
        ]
    return message


def completion_body(gen: Generation, *, id: str, created: int, model: str, cost_micro: int) -> dict[str, Any]:
    """A non-stream ``chat.completion`` object."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "message": _message(c), "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(gen.choices)
        ],
        "usage": usage(gen.prompt_tokens, gen.completion_tokens, cost_micro),
        "system_fingerprint": None,
    }


def embedding_body(
    vectors: Sequence[list[float] | str], *, model: str, prompt_tokens: int, cost_micro: int
) -> dict[str, Any]:
    """An embeddings ``list`` object (``vectors`` already encoded as floats or base64)."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens, "cost_micro": cost_micro},
    }


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    """One ``/v1/models`` entry; Nebo's own models carry a display ``name``."""
    entry: dict[str, Any] = {"id": spec.id, "object": "model", "created": MODELS_CREATED}
    entry["owned_by"] = spec.owned_by
    if spec.name:
        entry["name"] = spec.name
    return entry


def models_body() -> dict[str, Any]:
    """The ``/v1/models`` list: every model in the table."""
    return {"object": "list", "data": [model_entry(m) for m in MODELS]}


def usage_body(view: BudgetView, plan: str) -> dict[str, Any]:
    """``GET /v1/usage`` in the documented shape (nebo-api.md section 7.1)."""
    return {
        "plan": plan,
        "all_models": {
            "session_used": view.session_used,
            "session_limit": view.session_limit,
            "session_reset_seconds": seconds_until(view.session_reset, view.at),
            "weekly_used": view.weekly_used,
            "weekly_limit": view.weekly_limit,
            "weekly_reset_seconds": seconds_until(view.weekly_reset, view.at),
        },
        "grants": {"free_available": view.free, "gift_available": view.gift},
        "credits": {"balance_cents": view.credits_cents},
    }

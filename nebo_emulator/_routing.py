"""Which model serves a request: direct ids, the ``nebo-1`` aliases, and ``auto`` routing.

nebo-api.md section 12: ``auto`` and ``""`` route by content (cheap models for short,
simple prompts; premium ones for long or code/reasoning prompts) and by plan tier.
The emulator's rule is a transparent stand-in for Janus's ML scoring: over about 2,000
characters or any code/reasoning keyword goes premium, a short plain prompt goes nano,
the rest mini. The tier-to-model mapping comes from ``ModelSpec.tier``, never from names.
"""

from __future__ import annotations

import re

from nebo_core.models import MODELS, ROUTING_MODELS, ModelSpec, get_model

LONG_PROMPT_CHARS = 2000
SHORT_PROMPT_CHARS = 200
_HARD = re.compile(
    r"```|\b(code|coding|function|debug|debugging|prove|proof|analy[sz]e|analysis|algorithm|implement|"
    r"refactor|reason|reasoning|derive|theorem)\b|step[- ]by[- ]step",
    re.IGNORECASE,
)


def tier_model(tier: str) -> ModelSpec:
    """The first chat model of ``tier`` in the model table."""
    return next(m for m in MODELS if m.kind == "chat" and m.tier == tier)


def complexity(text: str) -> str:
    """``nano``, ``mini`` or ``premium``: how hard the prompt looks."""
    if len(text) > LONG_PROMPT_CHARS or _HARD.search(text):
        return "premium"
    return "nano" if len(text) <= SHORT_PROMPT_CHARS else "mini"


def route(requested: str, prompt_text: str, plan: str) -> ModelSpec | None:
    """The chat model that serves ``requested``; ``None`` when it is not a chat model Nebo knows."""
    if requested in ROUTING_MODELS or requested == "nebo-1":
        tier = complexity(prompt_text)
    elif requested == "nebo-1-flash":
        tier = "nano" if complexity(prompt_text) == "nano" else "mini"
    elif requested == "nebo-1-pro":
        return tier_model("premium")
    else:
        spec = get_model(requested)
        # Direct selection bypasses tier gating (nebo-api.md section 12).
        return spec if spec is not None and spec.kind == "chat" else None
    if plan == "free" and tier == "premium":
        tier = "mini"  # The plan decides which models routing may pick; free never routes premium.
    return tier_model(tier)

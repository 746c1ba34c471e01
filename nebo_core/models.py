"""The one table of per-model facts: what each Nebo model is, what it can do, what it costs.

Client code branches on these fields (context window, tool support, embedding
dimensions), and the emulator charges from the same prices, so no other module
keeps a model-name ``if`` chain. Prices are microdollars per one million tokens
(an ``int``); ratios follow the public list prices of the upstream models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["chat", "embedding"]


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about one model Nebo serves."""

    id: str
    kind: ModelKind
    owned_by: str
    context_window: int
    max_output_tokens: int = 0
    input_price: int = 0
    """Microdollars per 1M prompt tokens."""
    output_price: int = 0
    """Microdollars per 1M completion tokens."""
    cached_input_price: int = 0
    supports_tools: bool = True
    supports_vision: bool = False
    supports_reasoning: bool = False
    supports_json_schema: bool = True
    dimensions: int | None = None
    """Embedding width; ``None`` for chat models."""
    supports_dimensions: bool = False
    aliases: tuple[str, ...] = ()
    """Other names the server accepts for this model (e.g. the OpenAI name)."""
    upstream: str | None = None
    """The name the server echoes back in responses, when it differs from ``id``."""
    name: str | None = None
    tier: Literal["nano", "mini", "standard", "premium", "router", "embedding"] = "standard"

    def cost_micro(self, prompt_tokens: int, completion_tokens: int = 0, cached_tokens: int = 0) -> int:
        """Exact cost in microdollars (rounded up, at least 1 for a non-empty call)."""
        uncached = max(prompt_tokens - cached_tokens, 0)
        cached_price = self.cached_input_price or self.input_price
        pico = (
            uncached * self.input_price + cached_tokens * cached_price + completion_tokens * self.output_price
        )
        cost = -(-pico // 1_000_000)
        return max(cost, 1) if (prompt_tokens or completion_tokens) else 0


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "gpt-5.2",
        "chat",
        "openai",
        400_000,
        128_000,
        1_750_000,
        14_000_000,
        175_000,
        supports_vision=True,
        supports_reasoning=True,
        tier="premium",
    ),
    ModelSpec(
        "gpt-5-mini",
        "chat",
        "openai",
        400_000,
        128_000,
        250_000,
        2_000_000,
        25_000,
        supports_vision=True,
        supports_reasoning=True,
        tier="mini",
    ),
    ModelSpec(
        "gpt-5-nano",
        "chat",
        "openai",
        400_000,
        128_000,
        50_000,
        400_000,
        5_000,
        supports_vision=True,
        supports_reasoning=True,
        tier="nano",
    ),
    ModelSpec(
        "deepseek.v3.2",
        "chat",
        "bedrock",
        128_000,
        32_000,
        620_000,
        1_850_000,
        supports_reasoning=True,
        tier="standard",
    ),
    ModelSpec("qwen.qwen3-32b", "chat", "bedrock", 128_000, 16_000, 150_000, 600_000, tier="mini"),
    ModelSpec(
        "nebo-1",
        "chat",
        "neboai",
        200_000,
        64_000,
        1_250_000,
        10_000_000,
        supports_vision=True,
        supports_reasoning=True,
        name="Nebo 1",
        tier="router",
    ),
    ModelSpec(
        "nebo-1-flash",
        "chat",
        "neboai",
        200_000,
        64_000,
        100_000,
        800_000,
        supports_vision=True,
        name="Nebo 1 Flash",
        tier="router",
    ),
    ModelSpec(
        "nebo-1-pro",
        "chat",
        "neboai",
        200_000,
        64_000,
        3_000_000,
        15_000_000,
        supports_vision=True,
        supports_reasoning=True,
        name="Nebo 1 Pro",
        tier="router",
    ),
    ModelSpec(
        "neboloop/nebo-embed-small",
        "embedding",
        "openai",
        8_191,
        input_price=20_000,
        supports_tools=False,
        supports_json_schema=False,
        dimensions=1536,
        supports_dimensions=True,
        aliases=("text-embedding-3-small", "nebo-embed-small"),
        upstream="text-embedding-3-small",
        tier="embedding",
    ),
    ModelSpec(
        "neboloop/nebo-embed-large",
        "embedding",
        "openai",
        8_191,
        input_price=130_000,
        supports_tools=False,
        supports_json_schema=False,
        dimensions=3072,
        supports_dimensions=True,
        aliases=("text-embedding-3-large", "nebo-embed-large"),
        upstream="text-embedding-3-large",
        tier="embedding",
    ),
)

ROUTING_MODELS = frozenset({"auto", ""})
"""Model values that ask Nebo to route by content (nebo-api.md section 12)."""

DEFAULT_CHAT_MODEL = "auto"
DEFAULT_EMBEDDING_MODEL = "neboloop/nebo-embed-small"
AUTO_CONTEXT_WINDOW = 128_000
"""Context window assumed under ``auto`` routing: the smallest any routed model has."""
AUTO_MAX_OUTPUT = 16_000

_BY_NAME: dict[str, ModelSpec] = {}
for _spec in MODELS:
    _BY_NAME[_spec.id] = _spec
    for _alias in _spec.aliases:
        _BY_NAME[_alias] = _spec


def get_model(name: str) -> ModelSpec | None:
    """The spec for a model id or alias, or ``None`` when the table does not know it."""
    return _BY_NAME.get(name)


def chat_models() -> tuple[ModelSpec, ...]:
    """Every chat model in the table, in table order."""
    return tuple(m for m in MODELS if m.kind == "chat")


def check_embedding_model(name: str, dimensions: int | None = None) -> ModelSpec | None:
    """The spec of an embedding model, after checking ``dimensions`` fits it; ``None`` for a model
    the table does not know (sent as given: Nebo may serve models newer than this table)."""
    from nebo_core.errors import NeboConfigurationError

    spec = get_model(name)
    if spec is not None and spec.kind != "embedding":
        names = ", ".join(m.id for m in embedding_models())
        raise NeboConfigurationError(f"{name!r} is a chat model, not an embedding model; use one of: {names}")
    if dimensions is None:
        return spec
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise NeboConfigurationError(f"dimensions must be a whole number >= 1, got {dimensions!r}")
    if spec is not None and (not spec.supports_dimensions or dimensions > (spec.dimensions or 0)):
        raise NeboConfigurationError(
            f"dimensions={dimensions} is not valid for {name!r}: it returns up to {spec.dimensions} "
            "and accepts shorter vectors only where the model supports it"
        )
    return spec


def embedding_models() -> tuple[ModelSpec, ...]:
    """Every embedding model in the table, in table order."""
    return tuple(m for m in MODELS if m.kind == "embedding")

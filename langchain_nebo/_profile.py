"""``ChatNebo.profile``: LangChain's ``ModelProfile`` read from nebo_core's model table.

v1 middleware reads it (``SummarizationMiddleware(trigger=("fraction", 0.8))`` needs
``max_input_tokens``). A model id in the table gets its own facts; ``auto`` gets what every
model it may route to can do (the smallest windows, a capability only if all have it); a model
the table does not know gets no profile (pass ``profile=`` yourself), rather than a guess.
"""

from __future__ import annotations

from langchain_core.language_models import ModelProfile

from nebo_core.models import ROUTING_MODELS, ModelSpec, chat_models, get_model


def _input_limit(spec: ModelSpec) -> int:
    # What is left of the window once the longest answer is reserved (as OpenAI's 272k for gpt-5).
    return spec.context_window - spec.max_output_tokens


def _profile(
    name: str, max_input: int, max_output: int, tools: bool, schema: bool, vision: bool, reasoning: bool
) -> ModelProfile:
    return ModelProfile(
        name=name,
        max_input_tokens=max_input,
        max_output_tokens=max_output,
        text_inputs=True,
        text_outputs=True,
        image_inputs=vision,
        image_url_inputs=vision,
        tool_calling=tools,
        tool_choice=tools,
        tool_call_streaming=tools,
        structured_output=schema,
        reasoning_output=reasoning,
    )


def profile_for(model: str) -> ModelProfile | None:
    """The profile of ``model`` (conservative for ``auto``; ``None`` when the table lacks it)."""
    if model in ROUTING_MODELS:
        routed = chat_models()
        return _profile(
            "Nebo auto routing",
            min(_input_limit(m) for m in routed),
            min(m.max_output_tokens for m in routed),
            all(m.supports_tools for m in routed),
            all(m.supports_json_schema for m in routed),
            all(m.supports_vision for m in routed),
            all(m.supports_reasoning for m in routed),
        )
    spec = get_model(model)
    if spec is None or spec.kind != "chat":
        return None
    return _profile(
        spec.name or spec.id,
        _input_limit(spec),
        spec.max_output_tokens,
        spec.supports_tools,
        spec.supports_json_schema,
        spec.supports_vision,
        spec.supports_reasoning,
    )

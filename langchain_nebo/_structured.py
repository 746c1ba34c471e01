"""``with_structured_output`` for ``ChatNebo``: bind the right request fields, pick the parser.

Three methods: ``function_calling`` (one forced tool call), ``json_schema``
(``response_format`` with a JSON schema) and ``json_mode`` (``response_format`` JSON object).
``include_raw`` returns ``{"raw", "parsed", "parsing_error"}`` so the raw ``AIMessage``
(with its ``response_metadata["nebo"]`` budget and cost) is never lost, streamed or not.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

if TYPE_CHECKING:
    from langchain_nebo._chat_models import ChatNebo

METHODS = ("function_calling", "json_schema", "json_mode")


def _json_schema_format(schema: Any, strict: bool | None) -> tuple[str, dict[str, Any]]:
    if is_basemodel_subclass(schema):
        name, params = schema.__name__, schema.model_json_schema()
    elif isinstance(schema, dict) and "schema" in schema and "name" in schema:
        name, params = schema["name"], schema["schema"]  # already an OpenAI json_schema block
    else:
        function = convert_to_openai_tool(schema)["function"]
        name, params = function["name"], function.get("parameters", {})
    block: dict[str, Any] = {"name": name, "schema": params}
    if strict is not None:
        block["strict"] = strict
    return name, {"type": "json_schema", "json_schema": block}


def response_format_of(value: Any) -> Any:
    """A ``response_format`` as OpenAI takes it: a pydantic class becomes its JSON schema block."""
    if value is not None and is_basemodel_subclass(value):
        return _json_schema_format(value, None)[1]
    return value


def structured_output(
    model: ChatNebo,
    schema: Any,
    *,
    method: str,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[Any, Any]:
    """The runnable ``ChatNebo.with_structured_output`` returns."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if schema is None and method != "json_mode":
        raise ValueError(f"method={method!r} needs a schema; pass one, or use method='json_mode'")
    pydantic = is_basemodel_subclass(schema)
    parser: Runnable[Any, Any]
    if method == "function_calling":
        tool = convert_to_openai_tool(schema, strict=strict)
        name = tool["function"]["name"]
        llm = model.bind_tools(
            [schema],
            tool_choice=name,
            strict=strict,
            parallel_tool_calls=False,
            ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": tool},
        )
        parser = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)
            if pydantic
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    else:
        if method == "json_schema":
            _, response_format = _json_schema_format(schema, strict)
        else:
            response_format = {"type": "json_object"}
        llm = model.bind(
            response_format=response_format,
            ls_structured_output_format={
                "kwargs": {"method": method, "strict": strict},
                "schema": convert_to_openai_tool(schema) if schema is not None else None,
            },
        )
        parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()
    if not include_raw:
        return llm | parser
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parse.with_fallbacks([fallback], exception_key="parsing_error")

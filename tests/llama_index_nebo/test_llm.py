"""``Nebo`` on the emulator: chat, completion, streaming (sync and async alike), tools, structure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from llama_index_nebo import Nebo
from nebo_core import NeboConfigurationError
from nebo_core.models import AUTO_CONTEXT_WINDOW, AUTO_MAX_OUTPUT
from nebo_emulator import NeboEmulator

QUESTION = "Context: The Larkspur refund window is 30 days.\nQuestion: How long is the refund window?"


def add(a: int, b: int) -> int:
    """Add two integers a and b."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers a and b."""
    return a * b


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def test_chat_carries_answer_tokens_and_budget(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    response = llm.chat(user(QUESTION))
    assert "30 days" in (response.message.content or "")
    kw = response.additional_kwargs
    (entry,) = emu.ledger
    assert kw["nebo"]["cost_micro"] == entry.cost_micro > 0
    assert kw["nebo"]["cost_dollars"] == entry.cost_micro / 1_000_000
    assert kw["prompt_tokens"] > 0
    assert kw["completion_tokens"] > 0
    assert kw["total_tokens"] == kw["prompt_tokens"] + kw["completion_tokens"]
    assert kw["nebo"]["snapshot"]["session"]["limit_micro"] == 10_000_000
    assert kw["nebo"]["model"] == entry.model
    assert response.raw["object"] == "chat.completion"


async def test_sync_and_async_agree(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    sync = llm.chat(user(QUESTION))
    asynced = await llm.achat(user(QUESTION))
    assert sync.message.content == asynced.message.content
    assert sync.additional_kwargs["nebo"]["cost_micro"] == asynced.additional_kwargs["nebo"]["cost_micro"]
    complete = llm.complete(QUESTION)
    acomplete = await llm.acomplete(QUESTION)
    assert complete.text == acomplete.text == sync.message.content
    assert acomplete.additional_kwargs["nebo"]["cost_micro"] > 0


def test_stream_chat_deltas_and_final_usage(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    responses = list(llm.stream_chat(user(QUESTION)))
    text = "".join(r.delta or "" for r in responses)
    assert len(responses) > 2
    assert text == responses[-1].message.content
    assert "30 days" in text
    final = responses[-1].additional_kwargs
    assert final["nebo"]["cost_micro"] == emu.ledger_total_micro() > 0
    assert final["completion_tokens"] > 0
    assert llm.tracker.totals().total.cost_micro == emu.ledger_total_micro()


async def test_astream_matches_stream(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    sync = [r.delta for r in llm.stream_complete(QUESTION)]
    gen = await llm.astream_complete(QUESTION)
    asynced = [r.delta async for r in gen]
    assert sync == asynced
    achat = await llm.astream_chat(user(QUESTION))
    last = None
    async for last in achat:
        pass
    assert last is not None
    assert last.additional_kwargs["nebo"]["cost_micro"] > 0
    assert llm.tracker.totals().total.cost_micro == emu.ledger_total_micro()


def test_metadata_auto_and_named(conn: dict[str, Any]) -> None:
    auto = Nebo(**conn).metadata
    assert (auto.context_window, auto.num_output) == (AUTO_CONTEXT_WINDOW, AUTO_MAX_OUTPUT)
    assert auto.is_chat_model
    assert auto.is_function_calling_model
    assert auto.model_name == "auto"
    named = Nebo("gpt-5-mini", max_tokens=512, **conn).metadata
    assert (named.context_window, named.num_output, named.model_name) == (400_000, 512, "gpt-5-mini")


def test_key_never_serialized(emu: NeboEmulator) -> None:
    llm = Nebo(api_key=emu.token, base_url=emu.base_url, provider_api_key="sk-provider-secret")
    dumps = [json.dumps(llm.to_dict(), default=str), llm.to_json(), repr(llm)]
    if hasattr(llm, "to_payload"):  # newer llama-index-core sends this to instrumentation
        dumps.append(str(llm.to_payload()))
    for text in dumps:
        assert emu.token not in text
        assert "sk-provider-secret" not in text
        assert "api_key" not in text
    assert llm.to_dict()["base_url"] == emu.base_url


def test_api_base_alias_and_env(emu: NeboEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Nebo(api_key=emu.token, api_base=emu.base_url).base_url == emu.base_url
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
    llm = Nebo()
    assert llm.base_url == emu.base_url
    assert "30 days" in (llm.complete(QUESTION).text)
    with pytest.raises(NeboConfigurationError, match="disagree"):
        Nebo(api_key=emu.token, base_url=emu.base_url, api_base="https://janus.neboloop.com/v1")


def test_missing_key_names_the_fix() -> None:
    with pytest.raises(NeboConfigurationError, match="NEBO_API_KEY"):
        Nebo()


def test_chat_with_tools_and_predict_and_call(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)]
    response = llm.chat_with_tools([tools[0]], user_msg="Use add to add 3 and 4", tool_required=True)
    (call,) = llm.get_tool_calls_from_response(response)
    assert (call.tool_name, call.tool_kwargs) == ("add", {"a": 3, "b": 4})
    assert llm.predict_and_call([tools[0]], user_msg="Use add to add 3 and 4").response == "7"
    with pytest.raises(ValueError, match="expected at least one tool call"):
        llm.get_tool_calls_from_response(llm.chat(user("hello")))
    assert llm.get_tool_calls_from_response(llm.chat(user("hello")), error_on_no_tool_call=False) == []


def test_parallel_tool_calls(conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)]
    prompt = "Call add with a=2 and b=3, and also call multiply with a=2 and b=3."
    both = llm.chat_with_tools(tools, user_msg=prompt, allow_parallel_tool_calls=True)
    calls = [(c.tool_name, c.tool_kwargs) for c in llm.get_tool_calls_from_response(both)]
    assert sorted(calls) == [("add", {"a": 2, "b": 3}), ("multiply", {"a": 2, "b": 3})]
    single = llm.chat_with_tools(tools, user_msg=prompt, allow_parallel_tool_calls=False)
    assert len(llm.get_tool_calls_from_response(single)) == 1


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


def test_parallel_calls_of_one_tool_one_per_named_thing(conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    tool = FunctionTool.from_defaults(get_weather)
    prompt = "What is the weather in Paris and London?"
    both = llm.chat_with_tools([tool], user_msg=prompt, allow_parallel_tool_calls=True)
    calls = [(c.tool_name, c.tool_kwargs) for c in llm.get_tool_calls_from_response(both)]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "London"})]
    single = llm.chat_with_tools([tool], user_msg=prompt, allow_parallel_tool_calls=False)
    assert len(llm.get_tool_calls_from_response(single)) == 1


async def test_stream_chat_with_tools_sync_and_async(conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    tool = FunctionTool.from_defaults(add)
    last = list(llm.stream_chat_with_tools([tool], user_msg="Use add to add 3 and 4"))[-1]
    agen = await llm.astream_chat_with_tools([tool], user_msg="Use add to add 3 and 4")
    alast = [r async for r in agen][-1]
    for response in (last, alast):
        (call,) = llm.get_tool_calls_from_response(response)
        assert (call.tool_name, call.tool_kwargs) == ("add", {"a": 3, "b": 4})


class Person(BaseModel):
    name: str
    age: int


PERSON_PROMPT = PromptTemplate("Extract the person: {text}")


@pytest.mark.parametrize("mode", ["json_schema", "tools"])
async def test_structured_predict(emu: NeboEmulator, conn: dict[str, Any], mode: str) -> None:
    llm = Nebo(structured_output_mode=mode, **conn)
    text = "Mara Quill is 41 years old."
    person = llm.structured_predict(Person, PERSON_PROMPT, text=text)
    aperson = await llm.astructured_predict(Person, PERSON_PROMPT, text=text)
    assert isinstance(person, Person)
    assert person == aperson
    assert person.age == 41
    assert "Mara" in person.name

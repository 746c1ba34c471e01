"""ChatNebo on the emulator: metadata, streaming, tools, structured output, request fields, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.load import dumpd, dumps
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel, SecretStr

from langchain_nebo import ChatNebo, NeboEmbeddings
from nebo_core.errors import NeboConfigurationError


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    city: str


@tool
def lookup_city(city: str) -> str:
    """Look up facts about a city."""
    return f"{city} has a river."


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_user_clients() -> Iterator[None]:
    """A client the user passes in is the user's to close (the model never closes it)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _capturing_client(sent: list[dict[str, Any]]) -> httpx.Client:
    def hook(request: httpx.Request) -> None:
        sent.append(json.loads(request.content))

    _OPEN.append(httpx.Client(event_hooks={"request": [hook]}))
    return _OPEN[-1]


def test_invoke_carries_usage_routed_model_and_budget(connect: dict[str, Any], emu: Any) -> None:
    msg = ChatNebo(**connect).invoke("Context: the sky is blue. Question: what color is the sky?")
    meta = msg.response_metadata
    assert "blue" in msg.content
    assert meta["model_name"]
    assert meta["model_name"] != "auto"
    assert meta["finish_reason"] == "stop"
    assert meta["id"].startswith("chatcmpl")
    assert meta["nebo"]["cost_micro"] == emu.ledger[-1].cost_micro
    assert meta["nebo"]["cost_dollars"] == meta["nebo"]["cost_micro"] / 1_000_000
    assert meta["nebo"]["snapshot"]["session"]["remaining_micro"] is not None
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["total_tokens"] > 0


def test_stream_is_token_by_token_with_exactly_one_usage_chunk(connect: dict[str, Any], emu: Any) -> None:
    chunks = list(ChatNebo(**connect).stream("Say something about rivers and lakes"))
    assert sum(1 for c in chunks if c.content) > 2
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1
    assert with_usage[0] is chunks[-1]
    whole: AIMessageChunk = chunks[0]
    for c in chunks[1:]:
        whole += c
    assert whole.response_metadata["nebo"]["cost_micro"] == emu.ledger[-1].cost_micro
    assert whole.response_metadata["finish_reason"] == "stop"
    assert whole.usage_metadata == with_usage[0].usage_metadata


def test_stream_usage_off_drops_usage_but_keeps_budget(connect: dict[str, Any]) -> None:
    chunks = list(ChatNebo(stream_usage=False, **connect).stream("hello"))
    assert not any(c.usage_metadata for c in chunks)
    assert chunks[-1].response_metadata["nebo"]["cost_micro"] > 0


def test_streamed_tool_calls_arrive_as_chunks_and_assemble(connect: dict[str, Any]) -> None:
    model = ChatNebo(**connect).bind_tools([lookup_city], tool_choice="lookup_city")
    chunks = list(model.stream("Tell me about the city of Lyon"))
    assert any(c.tool_call_chunks for c in chunks)
    whole = chunks[0]
    for c in chunks[1:]:
        whole += c
    assert [tc["name"] for tc in whole.tool_calls] == ["lookup_city"]
    assert "Lyon" in whole.tool_calls[0]["args"]["city"]


def test_tool_choice_and_parallel_calls_reach_the_wire(connect: dict[str, Any]) -> None:
    sent: list[dict[str, Any]] = []
    model = ChatNebo(http_client=_capturing_client(sent), **connect)
    model.bind_tools([lookup_city], tool_choice="any", parallel_tool_calls=False).invoke("Paris")
    model.bind_tools([lookup_city], tool_choice="none").invoke("Paris")
    model.bind_tools([lookup_city]).invoke("Paris")
    assert sent[0]["tool_choice"] == "required"
    assert sent[0]["parallel_tool_calls"] is False
    assert sent[1]["tool_choice"] == "none"
    assert "tool_choice" not in sent[2]
    assert sent[0]["tools"][0]["function"]["name"] == "lookup_city"


def test_standard_params_and_model_kwargs_are_sent(connect: dict[str, Any]) -> None:
    sent: list[dict[str, Any]] = []
    model = ChatNebo(
        model="gpt-5-mini",
        temperature=0.2,
        max_tokens=50,
        stop=["END"],
        seed=7,
        top_p=0.9,
        reasoning_effort="low",
        user="u1",
        model_kwargs={"prompt_cache_key": "k1"},
        http_client=_capturing_client(sent),
        **connect,
    )
    model.invoke("hi", model="gpt-5-nano", extra_body={"metadata": {"k": "v"}})
    body = sent[0]
    assert body["model"] == "gpt-5-nano"
    assert (body["temperature"], body["max_completion_tokens"], body["stop"]) == (0.2, 50, ["END"])
    assert (body["seed"], body["top_p"], body["reasoning_effort"], body["user"]) == (7, 0.9, "low", "u1")
    assert body["metadata"] == {"k": "v"}
    assert body["prompt_cache_key"] == "k1"
    assert "max_tokens" not in body


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output_methods(connect: dict[str, Any], method: str) -> None:
    model = ChatNebo(**connect).with_structured_output(Person, method=method)
    person = model.invoke("Ada lives in the city of London.")
    assert isinstance(person, Person)
    assert person.name


def test_structured_output_json_mode_and_include_raw(connect: dict[str, Any]) -> None:
    out = ChatNebo(**connect).with_structured_output(None, method="json_mode", include_raw=True)
    result = out.invoke("Answer in JSON: what is two plus two?")
    assert isinstance(result, dict)
    assert set(result) == {"raw", "parsed", "parsing_error"}
    assert isinstance(result["parsed"], dict)
    assert result["parsing_error"] is None
    assert result["raw"].response_metadata["nebo"]["cost_micro"] > 0


def test_streamed_structured_output_keeps_budget_metadata(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(**connect).with_structured_output(Person, include_raw=True)
    parts = list(model.stream("Ada lives in the city of London."))
    raw = [p["raw"] for p in parts if "raw" in p]
    whole = raw[0]
    for r in raw[1:]:
        whole += r
    assert whole.response_metadata["nebo"]["cost_micro"] == emu.ledger[-1].cost_micro
    assert isinstance([p for p in parts if p.get("parsed")][-1]["parsed"], Person)


def test_bad_structured_method_names_the_choices(connect: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        ChatNebo(**connect).with_structured_output(Person, method="xml")  # type: ignore[arg-type]


def test_image_inputs_data_and_http_urls_are_sent_as_parts(connect: dict[str, Any]) -> None:
    sent: list[dict[str, Any]] = []
    model = ChatNebo(http_client=_capturing_client(sent), **connect)
    msg = HumanMessage(
        content=[
            {"type": "text", "text": "describe"},
            {"type": "image", "base64": "aGVsbG8=", "mime_type": "image/png"},
            {"type": "image", "url": "https://example.com/a.png"},
        ]
    )
    assert model.invoke([msg]).content
    parts = sent[0]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"] == "https://example.com/a.png"


def test_batch_runs_every_input(connect: dict[str, Any], emu: Any) -> None:
    before = len(emu.ledger)
    out = ChatNebo(**connect).batch(["one", "two", "three"])
    assert len(out) == 3
    assert all(m.response_metadata["nebo"]["cost_micro"] for m in out)
    assert len(emu.ledger) - before == 3


def test_the_key_never_shows(emu: Any, tracker: Any) -> None:
    model = ChatNebo(
        api_key=emu.token, base_url=emu.base_url, provider_api_key="sk-provider-SECRET", tracker=tracker
    )
    for text in (repr(model), str(model), dumps(model), json.dumps(dumpd(model)), str(model.asdict())):
        assert emu.token not in text
        assert "sk-provider-SECRET" not in text
    assert model.lc_secrets == {"api_key": "NEBO_API_KEY", "provider_api_key": "NEBO_PROVIDER_API_KEY"}
    assert model._get_ls_params()["ls_provider"] == "nebo"


def test_missing_key_fails_at_construction_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEBO_API_KEY", raising=False)
    for cls in (ChatNebo, NeboEmbeddings):
        # The typed error itself, not pydantic's ValidationError around it.
        with pytest.raises(NeboConfigurationError, match="NEBO_API_KEY"):
            cls()
        with pytest.raises(NeboConfigurationError, match="plain http"):
            cls(api_key="k", base_url="http://example.com/v1")


def test_model_copy_with_a_new_model_sends_the_new_model(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(model="gpt-5.2", **connect).model_copy(update={"model_name": "gpt-5-nano"})
    assert model.invoke("hi").response_metadata["model_name"] == "gpt-5-nano"
    assert emu.ledger[-1].requested_model == "gpt-5-nano"


def test_model_copy_with_a_new_key_rebuilds_the_settings(connect: dict[str, Any]) -> None:
    model = ChatNebo(**connect)
    model.invoke("warm the client")
    copy = model.model_copy(update={"api_key": SecretStr("other-token")})
    assert copy._provider.settings.api_key.get_secret_value() == "other-token"
    assert copy._provider is not model._provider
    assert model._provider.settings.api_key.get_secret_value() != "other-token"


def test_per_call_scope_goes_to_the_policy_not_the_server(connect: dict[str, Any], emu: Any) -> None:
    from nebo_core import BudgetPolicy

    sent: list[dict[str, Any]] = []
    policy = BudgetPolicy(max_spend_micro=1_000_000)
    model = ChatNebo(**{**connect, "policy": policy}, http_client=_capturing_client(sent))
    model.invoke("hi", scope="job-42")
    assert policy.spent_micro("job-42") == emu.ledger[-1].cost_micro > 0
    assert len(sent) == 1
    assert "scope" not in sent[0]


def test_per_call_stream_usage_false_leaves_usage_off(connect: dict[str, Any]) -> None:
    chunks = list(ChatNebo(**connect).stream("hi", stream_usage=False))
    assert all(c.usage_metadata is None for c in chunks)
    assert any(c.usage_metadata for c in ChatNebo(**connect).stream("hi"))


def test_core_client_is_created_once_and_cached(connect: dict[str, Any]) -> None:
    model = ChatNebo(**connect)
    model.invoke("a")
    first = model._provider.sync
    model.invoke("b")
    assert model._provider.sync is first

"""ChatOpenAI parity beyond the keyword list: n choices, logprobs, keyword sorting rules, profiles
(with SummarizationMiddleware), pickling. On the raw loopback server and on the emulator."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from langchain_nebo import ChatNebo, NeboBudgetCallbackHandler, NeboEmbeddings, NeboInvalidRequestError
from langchain_nebo._profile import profile_for
from nebo_core import NeboConfigurationError
from nebo_core.models import AUTO_CONTEXT_WINDOW, chat_models

# --- n choices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
def test_n_gives_n_generations_with_the_cost_counted_once(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    model = ChatNebo(n=3, **raw_connect)
    handler = NeboBudgetCallbackHandler()
    with get_usage_metadata_callback() as usage:
        if path == "sync":
            result = model.generate([[HumanMessage("hi")]], callbacks=[handler])
        else:
            result = asyncio.run(model.agenerate([[HumanMessage("hi")]], callbacks=[handler]))
    generations = result.generations[0]
    assert raw.last.body["n"] == 3
    assert [g.message.content for g in generations] == ["ok 0", "ok 1", "ok 2"]
    assert [g.message.response_metadata["choice_index"] for g in generations] == [0, 1, 2]
    assert generations[0].message.response_metadata["nebo"]["cost_micro"] == 11
    assert all("nebo" not in g.message.response_metadata for g in generations[1:])
    assert handler.total_cost_micro == 11  # the call, once
    assert sum(u["total_tokens"] for u in usage.usage_metadata.values()) == 7
    assert model.invoke("hi").content == "ok 0"  # invoke gives the first choice


def test_n_on_the_emulator(connect: dict[str, Any], emu: Any) -> None:
    result = ChatNebo(n=2, **connect).generate(
        [[HumanMessage("Context: the sky is blue. What color is the sky?")]]
    )
    assert len(result.generations[0]) == 2
    assert (
        result.generations[0][0].message.response_metadata["nebo"]["cost_micro"] == emu.ledger[-1].cost_micro
    )


def test_n_cannot_be_streamed_and_says_so(raw: Any, raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboConfigurationError, match="n must be 1 when streaming"):
        ChatNebo(n=2, streaming=True, **raw_connect)
    with pytest.raises(NeboInvalidRequestError, match="n=2 cannot be streamed"):
        list(ChatNebo(n=2, **raw_connect).stream("hi"))
    with pytest.raises(NeboInvalidRequestError, match="n=3 cannot be streamed"):
        list(ChatNebo(**raw_connect).stream("hi", n=3))
    assert raw.requests == []
    for bad in (0, -1):
        with pytest.raises(NeboConfigurationError, match="n must be >= 1"):
            ChatNebo(n=bad, **raw_connect)
    with pytest.raises(NeboConfigurationError, match="max_tokens must be >= 1"):
        ChatNebo(max_completion_tokens=0, **raw_connect)


# --- logprobs --------------------------------------------------------------------------------------


def _collect(chunks: list[Any]) -> Any:
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return whole


@pytest.mark.parametrize("path", ["invoke", "ainvoke", "stream", "astream"])
def test_logprobs_come_back_in_response_metadata(raw: Any, raw_connect: dict[str, Any], path: str) -> None:
    model = ChatNebo(logprobs=True, top_logprobs=2, **raw_connect)

    async def astream() -> list[Any]:
        return [c async for c in model.astream("hi")]

    if path == "invoke":
        msg = model.invoke("hi")
    elif path == "ainvoke":
        msg = asyncio.run(model.ainvoke("hi"))
    elif path == "stream":
        msg = _collect(list(model.stream("hi")))
    else:
        msg = _collect(asyncio.run(astream()))
    assert (raw.last.body["logprobs"], raw.last.body["top_logprobs"]) == (True, 2)
    tokens = [entry["token"] for entry in msg.response_metadata["logprobs"]["content"]]
    assert tokens == (["ok"] if path in ("invoke", "ainvoke") else ["Hello", " world"])


def test_no_logprobs_asked_none_shown(raw: Any, raw_connect: dict[str, Any]) -> None:
    msg = ChatNebo(**raw_connect).invoke("hi")
    assert msg.response_metadata["logprobs"] is None  # as the server sent it
    assert "logprobs" not in _collect(list(ChatNebo(**raw_connect).stream("hi"))).response_metadata


# --- keyword rules ---------------------------------------------------------------------------------


def test_model_kwargs_repeating_an_explicit_field_raise(raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboConfigurationError, match="temperature twice"):
        ChatNebo(temperature=0.1, model_kwargs={"temperature": 0.2}, **raw_connect)
    with pytest.raises(NeboConfigurationError, match="max_tokens twice"):
        ChatNebo(max_completion_tokens=5, model_kwargs={"max_tokens": 6}, **raw_connect)
    with pytest.raises(NeboConfigurationError, match="foo twice"):
        ChatNebo(foo=1, model_kwargs={"foo": 2}, **raw_connect)  # raised before any warning
    with pytest.raises(NeboConfigurationError, match="dimensions twice"):
        NeboEmbeddings(dimensions=8, model_kwargs={"dimensions": 16}, **raw_connect)


def test_a_field_in_model_kwargs_moves_to_the_field_with_a_warning(
    raw: Any, raw_connect: dict[str, Any]
) -> None:
    with pytest.warns(UserWarning, match="temperature should be passed as temperature="):
        model = ChatNebo(model_kwargs={"temperature": 0.2}, **raw_connect)
    assert (model.temperature, model.model_kwargs) == (0.2, {})
    model.invoke("hi")
    assert raw.last.body["temperature"] == 0.2


def test_a_refused_keyword_is_refused_in_model_kwargs_too(raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboConfigurationError, match=r"openai_api_key= \(in model_kwargs\)"):
        ChatNebo(model_kwargs={"openai_api_key": "sk-x"}, **raw_connect)


def test_an_unknown_embeddings_keyword_warns_and_reaches_the_wire(
    raw: Any, raw_connect: dict[str, Any]
) -> None:
    with pytest.warns(UserWarning, match="did you mean 'dimensions'"):
        model = NeboEmbeddings(dimentions=256, **raw_connect)
    model.embed_documents(["a"])
    assert raw.last.body["dimentions"] == 256


def test_reasoning_takes_only_an_effort(raw: Any, raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboConfigurationError, match="only 'effort' applies"):
        ChatNebo(reasoning={"effort": "low", "summary": "auto"}, **raw_connect)
    with pytest.raises(NeboConfigurationError, match="two efforts"):
        ChatNebo(reasoning={"effort": "low"}, reasoning_effort="high", **raw_connect)


class Answer(BaseModel):
    """An answer."""

    text: str


def test_response_format_may_be_a_pydantic_class(raw: Any, raw_connect: dict[str, Any]) -> None:
    ChatNebo(response_format=Answer, **raw_connect).invoke("hi")
    assert raw.last.body["response_format"]["json_schema"]["name"] == "Answer"
    ChatNebo(**raw_connect).invoke("hi", response_format=Answer)
    assert raw.last.body["response_format"]["json_schema"]["schema"]["required"] == ["text"]


def test_call_time_keywords_override_the_constructor_and_extra_body_merges(
    raw: Any, raw_connect: dict[str, Any]
) -> None:
    model = ChatNebo(temperature=0.1, extra_body={"a": 1, "b": 1}, **raw_connect)
    model.invoke("hi", temperature=0.7, extra_body={"b": 2})
    body = raw.last.body
    assert (body["temperature"], body["a"], body["b"]) == (0.7, 1, 2)


# --- profiles --------------------------------------------------------------------------------------


def test_profiles_come_from_the_model_table() -> None:
    for spec in chat_models():
        profile = profile_for(spec.id)
        assert profile is not None
        assert profile["max_input_tokens"] == spec.context_window - spec.max_output_tokens
        assert profile["max_output_tokens"] == spec.max_output_tokens
        assert profile["tool_calling"] is spec.supports_tools
        assert profile["structured_output"] is spec.supports_json_schema
        assert profile["image_inputs"] is spec.supports_vision
    assert profile_for("text-embedding-3-small") is None
    assert profile_for("some-future-model") is None


def test_auto_gets_what_every_routed_model_can_do() -> None:
    auto = profile_for("auto")
    assert auto is not None
    assert auto["max_input_tokens"] == min(m.context_window - m.max_output_tokens for m in chat_models())
    assert auto["max_input_tokens"] <= AUTO_CONTEXT_WINDOW
    assert auto["image_inputs"] is False  # not every routed model takes images
    assert auto["tool_calling"] is True
    assert ChatNebo(api_key="k").profile == auto


def test_summarization_middleware_works_with_a_fraction_trigger(connect: dict[str, Any]) -> None:
    model = ChatNebo(model="gpt-5-mini", **connect)
    with pytest.raises(ValueError, match="profile"):
        SummarizationMiddleware(ChatNebo(model="some-future-model", **connect), trigger=("fraction", 0.8))
    SummarizationMiddleware(ChatNebo(**connect), trigger=("fraction", 0.8))  # auto: conservative profile
    # A tiny fraction of gpt-5-mini's 272k window (27 tokens) makes the middleware summarize now.
    summarize = SummarizationMiddleware(model, trigger=("fraction", 0.0001), keep=("messages", 1))
    agent = create_agent(model, tools=[], middleware=[summarize])
    history = [
        HumanMessage("Context: the Rhone flows through Lyon and Geneva, two cities on its banks."),
        AIMessage("Noted: the Rhone flows through Lyon and Geneva."),
        HumanMessage("Context: the Seine flows through Paris. Which river flows through Paris?"),
    ]
    messages = agent.invoke({"messages": history})["messages"]
    assert any("summary" in str(m.content).lower() for m in messages[:2])
    assert len(messages) < len(history) + 1


# --- pickling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ChatNebo, NeboEmbeddings])
def test_a_key_from_the_environment_pickles_and_is_read_again_on_load(
    cls: type[Any], emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
    model = cls(default_headers={"X-Team": "search"})
    data = pickle.dumps(model)
    assert emu.token.encode() not in data
    copy = pickle.loads(data)
    assert copy.api_key.get_secret_value() == emu.token
    assert copy._provider.settings.default_headers == {"X-Team": "search"}
    if cls is ChatNebo:
        assert copy.invoke("Context: the sky is blue. What color is the sky?").content
    else:
        assert len(copy.embed_query("hello")) > 0


def test_an_unpickled_model_without_a_key_says_which_variable_to_set(
    raw_connect: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEBO_API_KEY", "env-key")
    data = pickle.dumps(ChatNebo(**{k: v for k, v in raw_connect.items() if k != "api_key"}))
    monkeypatch.delenv("NEBO_API_KEY")
    copy = pickle.loads(data)
    with pytest.raises(NeboInvalidRequestError, match="set NEBO_API_KEY in that process"):
        copy.invoke("hi")


@pytest.mark.parametrize(
    ("name", "env"), [("api_key", "NEBO_API_KEY"), ("provider_api_key", "NEBO_PROVIDER_API_KEY")]
)
@pytest.mark.parametrize("cls", [ChatNebo, NeboEmbeddings])
def test_an_explicit_key_refuses_to_pickle_and_says_what_to_do(
    cls: type[Any], name: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEBO_API_KEY", "env-key")
    model = cls(**{name: "explicit-SECRET"})
    with pytest.raises(TypeError, match=f"given {name}=.*set {env} instead") as err:
        pickle.dumps(model)
    assert "explicit-SECRET" not in str(err.value)

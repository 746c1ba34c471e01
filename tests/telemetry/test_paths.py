"""One client span per Nebo call, whose ``nebo.cost_micro`` is the emulator's ledger entry, on
every path: ``NeboClient``, ``AsyncNeboClient``, ``openai_client()``, ``async_openai_client()``,
``ChatNebo``, ``NeboEmbeddings``, ``Nebo`` and ``NeboEmbedding``.

Each scenario (chat, a stream read fully, a stream closed early, a tool-calling round trip,
embeddings, a budget 429) is written once against a small adapter per path; the checks are the
same for all: as many spans as HTTP calls, each span's request id and cost equal to its ledger
entry, and the sum over spans equal to the ledger's total.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from opentelemetry.trace import StatusCode

from nebo_core import AsyncNeboClient, NeboBudgetExhausted, NeboClient, async_openai_client, openai_client
from nebo_emulator import NeboEmulator

openai = pytest.importorskip("openai")
from langchain_nebo import NeboBudgetExhaustedError  # noqa: E402

CHAT = "In one line: why is the sky blue?"
STORY = "Tell me a long story about the sea and the ships on it."
TOOL_PROMPT = "Use the add tool to add 3 and 4."
TEXTS = ["the sky is blue", "the sea is green", "ships sail"]
EMBED_MODEL = "neboloop/nebo-embed-small"
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# --- the paths ---------------------------------------------------------------------------------


class Path:
    """One entry point. Scenarios use ``chat``, ``stream``, ``stream_early``, ``tools``, ``embed``."""

    can: ClassVar[frozenset[str]]
    budget_error: ClassVar[type[BaseException]] = NeboBudgetExhausted
    """What the path raises for a budget 429."""

    def __init__(self, conn: dict[str, Any]) -> None:
        self.conn = conn

    async def close(self) -> None:
        pass


class NativeSync(Path):
    can = frozenset({"chat", "stream", "stream_early", "tools", "embed", "budget"})

    def __init__(self, conn: dict[str, Any]) -> None:
        super().__init__(conn)
        self.client = NeboClient(**conn)

    async def chat(self, prompt: str) -> None:
        assert self.client.chat({"messages": [{"role": "user", "content": prompt}]}).message["content"]

    async def stream(self, prompt: str) -> None:
        with self.client.stream_chat({"messages": [{"role": "user", "content": prompt}]}) as s:
            assert len(list(s)) > 2

    async def stream_early(self, prompt: str) -> None:
        with self.client.stream_chat({"messages": [{"role": "user", "content": prompt}]}) as s:
            next(iter(s))

    async def tools(self) -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": TOOL_PROMPT}]
        first = self.client.chat({"messages": messages, "tools": [ADD_TOOL]}).message
        (call,) = first["tool_calls"]
        result = add(**json.loads(call["function"]["arguments"]))
        messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": str(result)}]
        assert "7" in self.client.chat({"messages": messages, "tools": [ADD_TOOL]}).message["content"]

    async def embed(self, texts: list[str]) -> None:
        assert len(self.client.embed(texts, model=EMBED_MODEL).vectors) == len(texts)

    async def close(self) -> None:
        self.client.close()


class NativeAsync(NativeSync):
    def __init__(self, conn: dict[str, Any]) -> None:
        Path.__init__(self, conn)
        self.aclient = AsyncNeboClient(**conn)

    async def chat(self, prompt: str) -> None:
        answer = await self.aclient.chat({"messages": [{"role": "user", "content": prompt}]})
        assert answer.message["content"]

    async def stream(self, prompt: str) -> None:
        async with self.aclient.stream_chat({"messages": [{"role": "user", "content": prompt}]}) as s:
            assert len([c async for c in s]) > 2

    async def stream_early(self, prompt: str) -> None:
        async with self.aclient.stream_chat({"messages": [{"role": "user", "content": prompt}]}) as s:
            await s.__anext__()

    async def tools(self) -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": TOOL_PROMPT}]
        first = (await self.aclient.chat({"messages": messages, "tools": [ADD_TOOL]})).message
        (call,) = first["tool_calls"]
        messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": "7"}]
        assert (
            "7" in (await self.aclient.chat({"messages": messages, "tools": [ADD_TOOL]})).message["content"]
        )

    async def embed(self, texts: list[str]) -> None:
        assert len((await self.aclient.embed(texts, model=EMBED_MODEL)).vectors) == len(texts)

    async def close(self) -> None:
        await self.aclient.aclose()


class SdkSync(Path):
    can = NativeSync.can
    budget_error = openai.RateLimitError

    def __init__(self, conn: dict[str, Any]) -> None:
        super().__init__(conn)
        self.client = openai_client(**conn)

    async def chat(self, prompt: str) -> None:
        answer = self.client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}]
        )
        assert answer.choices[0].message.content

    async def stream(self, prompt: str) -> None:
        s = self.client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}], stream=True
        )
        with s:
            assert len(list(s)) > 2

    async def stream_early(self, prompt: str) -> None:
        s = self.client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}], stream=True
        )
        with s:
            next(iter(s))

    async def tools(self) -> None:
        messages: list[Any] = [{"role": "user", "content": TOOL_PROMPT}]
        first = self.client.chat.completions.create(model="auto", messages=messages, tools=[ADD_TOOL])
        (call,) = first.choices[0].message.tool_calls or []
        messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "7"}]
        second = self.client.chat.completions.create(model="auto", messages=messages, tools=[ADD_TOOL])
        assert "7" in (second.choices[0].message.content or "")

    async def embed(self, texts: list[str]) -> None:
        assert len(self.client.embeddings.create(model=EMBED_MODEL, input=texts).data) == len(texts)

    async def close(self) -> None:
        self.client.close()


class SdkAsync(SdkSync):
    def __init__(self, conn: dict[str, Any]) -> None:
        Path.__init__(self, conn)
        self.aclient = async_openai_client(**conn)

    async def chat(self, prompt: str) -> None:
        answer = await self.aclient.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}]
        )
        assert answer.choices[0].message.content

    async def stream(self, prompt: str) -> None:
        s = await self.aclient.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with s:
            assert len([c async for c in s]) > 2

    async def stream_early(self, prompt: str) -> None:
        s = await self.aclient.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with s:
            await s.__anext__()

    async def tools(self) -> None:
        messages: list[Any] = [{"role": "user", "content": TOOL_PROMPT}]
        first = await self.aclient.chat.completions.create(model="auto", messages=messages, tools=[ADD_TOOL])
        (call,) = first.choices[0].message.tool_calls or []
        messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "7"}]
        second = await self.aclient.chat.completions.create(model="auto", messages=messages, tools=[ADD_TOOL])
        assert "7" in (second.choices[0].message.content or "")

    async def embed(self, texts: list[str]) -> None:
        done = await self.aclient.embeddings.create(model=EMBED_MODEL, input=texts)
        assert len(done.data) == len(texts)

    async def close(self) -> None:
        await self.aclient.close()


class LangChain(Path):
    can = frozenset({"chat", "stream", "stream_early", "tools", "budget"})
    budget_error = NeboBudgetExhaustedError

    def __init__(self, conn: dict[str, Any]) -> None:
        super().__init__(conn)
        from langchain_nebo import ChatNebo

        self.model = ChatNebo(**conn)

    async def chat(self, prompt: str) -> None:
        assert self.model.invoke(prompt).content

    async def stream(self, prompt: str) -> None:
        assert len(list(self.model.stream(prompt))) > 2

    async def stream_early(self, prompt: str) -> None:
        chunks = self.model.stream(prompt)
        next(chunks)
        chunks.close()

    async def tools(self) -> None:
        from langchain_core.messages import HumanMessage, ToolMessage

        bound = self.model.bind_tools([add])
        messages: list[Any] = [HumanMessage(TOOL_PROMPT)]
        first = bound.invoke(messages)
        (call,) = first.tool_calls
        messages += [first, ToolMessage(str(add(**call["args"])), tool_call_id=call["id"])]
        assert "7" in str(bound.invoke(messages).content)


class LangChainEmbeddings(Path):
    can = frozenset({"embed"})

    async def embed(self, texts: list[str]) -> None:
        from langchain_nebo import NeboEmbeddings

        assert len(NeboEmbeddings(model=EMBED_MODEL, **self.conn).embed_documents(texts)) == len(texts)


class LlamaIndex(Path):
    can = frozenset({"chat", "stream", "stream_early", "tools", "budget"})

    def __init__(self, conn: dict[str, Any]) -> None:
        super().__init__(conn)
        from llama_index_nebo import Nebo

        self.llm = Nebo(**conn)

    @staticmethod
    def _user(prompt: str) -> list[Any]:
        from llama_index.core.llms import ChatMessage

        return [ChatMessage(role="user", content=prompt)]

    async def chat(self, prompt: str) -> None:
        assert self.llm.chat(self._user(prompt)).message.content

    async def stream(self, prompt: str) -> None:
        assert len(list(self.llm.stream_chat(self._user(prompt)))) > 2

    async def stream_early(self, prompt: str) -> None:
        chunks = self.llm.stream_chat(self._user(prompt))
        next(chunks)
        chunks.close()

    async def tools(self) -> None:
        from llama_index.core.llms import ChatMessage
        from llama_index.core.tools import FunctionTool

        tool = FunctionTool.from_defaults(add)
        first = self.llm.chat_with_tools([tool], user_msg=TOOL_PROMPT)
        (call,) = self.llm.get_tool_calls_from_response(first)
        history = [
            *self._user(TOOL_PROMPT),
            first.message,
            ChatMessage(
                role="tool",
                content=str(add(**call.tool_kwargs)),
                additional_kwargs={"tool_call_id": call.tool_id},
            ),
        ]
        assert "7" in str(self.llm.chat_with_tools([tool], chat_history=history).message.content)


class LlamaIndexEmbedding(Path):
    can = frozenset({"embed"})

    async def embed(self, texts: list[str]) -> None:
        from llama_index_nebo import NeboEmbedding

        assert len(NeboEmbedding(EMBED_MODEL, **self.conn).get_text_embedding_batch(texts)) == len(texts)


PATHS: dict[str, type[Path]] = {
    "NeboClient": NativeSync,
    "AsyncNeboClient": NativeAsync,
    "openai_client": SdkSync,
    "async_openai_client": SdkAsync,
    "ChatNebo": LangChain,
    "NeboEmbeddings": LangChainEmbeddings,
    "Nebo": LlamaIndex,
    "NeboEmbedding": LlamaIndexEmbedding,
}

# --- the scenarios: (what to do, how many Nebo calls it makes) ---------------------------------

Scenario = Callable[[Path, NeboEmulator], Awaitable[None]]


async def _chat(path: Any, emu: NeboEmulator) -> None:
    await path.chat(CHAT)


async def _stream(path: Any, emu: NeboEmulator) -> None:
    await path.stream(STORY)


async def _stream_early(path: Any, emu: NeboEmulator) -> None:
    await path.stream_early(STORY)


async def _tools(path: Any, emu: NeboEmulator) -> None:
    await path.tools()


async def _embed(path: Any, emu: NeboEmulator) -> None:
    await path.embed(TEXTS)


async def _budget(path: Any, emu: NeboEmulator) -> None:
    emu.set_budget(session_remaining_micro=0)
    with pytest.raises(path.budget_error) as info:
        await path.chat(CHAT)
    assert type(info.value) is path.budget_error


SCENARIOS: dict[str, tuple[Scenario, int]] = {
    "chat": (_chat, 1),
    "stream": (_stream, 1),
    "stream_early": (_stream_early, 1),
    "tools": (_tools, 2),
    "embed": (_embed, 1),
    "budget": (_budget, 1),
}
MATRIX = [(p, s) for p, cls in PATHS.items() for s in SCENARIOS if s in cls.can]


@pytest.mark.parametrize(("path_name", "scenario"), MATRIX)
async def test_one_span_per_call_costing_its_ledger_entry(
    path_name: str, scenario: str, otel: Any, emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    run, calls = SCENARIOS[scenario]
    path = PATHS[path_name](conn)
    try:
        await run(path, emu)
    finally:
        await path.close()
    spans = otel.spans()
    assert len(spans) == calls, [s.name for s in spans]
    ledger = emu.ledger
    operation = "embeddings" if scenario == "embed" else "chat"
    for span in spans:
        attrs = span.attributes
        assert attrs["gen_ai.operation.name"] == operation
        assert attrs["gen_ai.provider.name"] == "nebo"
        assert span.name == f"{operation} {attrs['gen_ai.request.model']}"
        assert isinstance(attrs["nebo.cost_micro"], int)
    costs = {s.attributes.get("nebo.request_id"): s.attributes["nebo.cost_micro"] for s in spans}

    if scenario == "budget":
        (span,) = spans
        assert ledger == []
        assert span.attributes["nebo.cost_micro"] == 0
        assert span.attributes["error.type"] == "NeboBudgetExhausted"
        assert span.attributes["nebo.error.code"] == "USAGE_LIMIT_EXCEEDED"
        assert span.attributes["nebo.budget.session.remaining_micro"] == 0
        assert span.status.status_code is StatusCode.ERROR
        assert [e.name for e in span.events] == ["nebo.budget.exhausted", "nebo.budget.refused"]
        return

    assert len(ledger) == calls
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes["gen_ai.response.model"] in {e.model for e in ledger}
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
    if scenario == "stream_early":
        # What the stream showed before it was closed (its cumulative usage so far), exactly as
        # the core recorded it; the emulator bills the whole answer up front, so this is a lower
        # bound of the ledger entry (an early-closed stream's true cost is not visible to a client).
        (span,) = spans
        (entry,) = ledger
        record = conn["tracker"].history()[-1]
        assert span.attributes["nebo.stream.closed_early"] is True
        assert span.attributes["nebo.stream.complete"] is False
        assert span.attributes["nebo.request_id"] == entry.request_id == record.request_id
        assert 0 < span.attributes["nebo.cost_micro"] == record.cost_micro <= entry.cost_micro
        return
    assert costs == {e.request_id: e.cost_micro for e in ledger}
    assert sum(costs.values()) == emu.ledger_total_micro() > 0
    if scenario == "stream":
        assert spans[0].attributes["nebo.stream.complete"] is True
        assert spans[0].attributes["nebo.stream.closed_early"] is False
        assert spans[0].attributes["gen_ai.request.stream"] is True
    if scenario == "tools":
        assert spans[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
        assert spans[1].attributes["gen_ai.response.finish_reasons"] == ("stop",)
    if scenario == "embed":
        assert spans[0].attributes["gen_ai.request.model"] == EMBED_MODEL
        assert "gen_ai.usage.output_tokens" not in spans[0].attributes

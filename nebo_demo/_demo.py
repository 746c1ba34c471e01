"""``nebo demo``: four short screens that show what the integrations do, end to end.

1. a LlamaIndex RAG index over a small bundled corpus (``NeboEmbedding``, ``Nebo``);
2. a LangChain tool-calling agent (``create_agent`` with ``ChatNebo`` and two tools);
3. the budget: both windows, spend per model and cost per step, from one shared tracker;
4. a budget guard (``BudgetPolicy(max_spend_micro=...)``) stopping an agent before a request.

It runs against the live API when ``NEBO_API_KEY`` is set and otherwise starts an emulator
and says so. The frameworks are imported inside functions: ``nebo_core`` itself never
imports LangChain or LlamaIndex at module level.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nebo_core.budget import UsageRecord
from nebo_core.errors import NeboBudgetExhausted
from nebo_core.settings import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL
from nebo_core.tracker import BudgetTracker
from nebo_demo import render

CORPUS_DIR = Path(__file__).with_name("corpus")
QUESTIONS = (
    "How long do I have to ask for a refund on a monthly plan?",
    "How many requests per minute does the API allow on the Team plan?",
)
AGENT_TASK = (
    "A customer writes about an order: the order id is A-1042 and the country is Portugal. "
    "Check the order status and the shipping days, then summarise both for the customer."
)
SECTION_TITLES = (
    "1. RAG with LlamaIndex (NeboEmbedding + Nebo)",
    "2. A LangChain agent with tools (ChatNebo + create_agent)",
    "3. The budget (one BudgetTracker shared by every model above)",
    "4. A budget guard stops an agent (BudgetPolicy(max_spend_micro=...))",
)


@dataclass
class Demo:
    """Connection, the shared tracker and the output; each section is a function of this."""

    conn: dict[str, Any]
    out: TextIO
    ascii: bool = False
    tracker: BudgetTracker = field(default_factory=BudgetTracker)
    emulator: Any = None

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)
        self.out.flush()

    def title(self, text: str) -> None:
        rule = ("=" if self.ascii else "\u2550") * max(len(text), 60)
        self.say("", rule, text, rule)

    def records(self, scope: str) -> list[UsageRecord]:
        return [r for r in self.tracker.history() if r.scope == scope]


# -- the four sections ------------------------------------------------------------------


def corpus_documents() -> list[tuple[str, str]]:
    """``(file name, text)`` for every bundled corpus file, sorted by name."""
    return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(CORPUS_DIR.glob("*.md"))]


def section_rag(demo: Demo) -> None:
    """Index the corpus with NeboEmbedding (progress bar on stderr) and answer two questions."""
    from llama_index.core import Document, VectorStoreIndex

    from llama_index_nebo import Nebo, NeboEmbedding

    files = corpus_documents()
    demo.say(f"Indexing {len(files)} short documents about a fictional product, Lumen Notes:")
    demo.say("  " + ", ".join(name for name, _ in files))
    docs = [Document(text=text, metadata={"file_name": name}) for name, text in files]
    embed = NeboEmbedding(**demo.conn, tracker=demo.tracker, scope="rag")
    llm = Nebo(**demo.conn, tracker=demo.tracker, scope="rag")
    index = VectorStoreIndex.from_documents(docs, embed_model=embed, show_progress=True)
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    for question in QUESTIONS:
        response = engine.query(question)
        demo.say("", f"Q: {question}", f"A: {str(response).strip()}")
        for hit in response.source_nodes:
            score = f"{hit.score:.3f}" if hit.score is not None else "?"
            demo.say(f"   source: {hit.node.metadata.get('file_name', '?')} (similarity {score})")


def _agent_tools() -> list[Any]:
    from langchain_core.tools import tool

    @tool
    def order_status(order_id: str) -> str:
        """Look up the status of a customer order by its order id."""
        return f"order {order_id}: packed, leaves the Lisbon warehouse tomorrow"

    @tool
    def shipping_days(country: str) -> str:
        """How many shipping days a parcel takes to reach a country."""
        days = {"portugal": 2, "spain": 3, "germany": 4}.get(country.strip().lower(), 7)
        return f"{days} business days to {country}"

    return [order_status, shipping_days]


def _run_agent(demo: Demo, scope: str, policy: Any = None, tracker: BudgetTracker | None = None) -> Any:
    from langchain.agents import create_agent

    from langchain_nebo import ChatNebo

    model = ChatNebo(**demo.conn, tracker=tracker or demo.tracker, policy=policy, scope=scope)
    agent = create_agent(
        model, tools=_agent_tools(), system_prompt="You are a support agent. Use the tools to answer."
    )
    return agent.invoke({"messages": [{"role": "user", "content": AGENT_TASK}]})


def section_agent(demo: Demo) -> None:
    """A tool-calling agent completing a small support task."""
    demo.say(f"Task: {AGENT_TASK}", "")
    result = _run_agent(demo, "agent")
    for message in result["messages"][1:]:
        for call in getattr(message, "tool_calls", None) or []:
            demo.say(
                f"  model calls {call['name']}({', '.join(f'{k}={v!r}' for k, v in call['args'].items())})"
            )
        if message.type == "tool":
            demo.say(f"  tool {message.name} -> {message.content}")
    demo.say("", f"Final answer: {result['messages'][-1].content}")


def section_budget(demo: Demo) -> None:
    """Both windows (from the latest response headers), spend per model and cost per step."""
    snapshot = demo.tracker.snapshot
    if snapshot is None or not snapshot.known:
        from nebo_core.client import NeboClient

        with NeboClient(**demo.conn, tracker=BudgetTracker()) as client:
            snapshot = client.usage().snapshot
    demo.say("Budget windows (as of the last response):", render.render_snapshot(snapshot, ascii=demo.ascii))
    demo.say("", "Spend per model:", render.render_spend(demo.tracker.totals()))
    demo.say("", "Cost per step:", render.render_steps(demo.tracker.history()))
    total = demo.tracker.totals().total.cost_micro
    if demo.emulator is not None:
        ledger = demo.emulator.ledger_total_micro()
        verdict = "matches" if ledger == total else "DIFFERS from"
        demo.say("", f"The emulator billed {ledger} microdollars: the tracker total ({total}) {verdict} it.")


def _budget_error(exc: BaseException) -> NeboBudgetExhausted | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, NeboBudgetExhausted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def section_guard(demo: Demo) -> None:
    """The same agent under a cap of about one and a half calls: its second call is refused.

    The policy reserves an estimate before each call (here the mean cost of section 2's calls)
    and refuses when spend plus the estimate would pass the cap, so that request is never sent.
    """
    from nebo_core.policy import BudgetPolicy

    costs = [r.cost_micro for r in demo.records("agent") if r.kind == "chat" and r.cost_micro]
    estimate = max(sum(costs) // len(costs), 1) if costs else 1
    cap = estimate * 3 // 2
    guard_tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=cap, estimate_micro=estimate)
    requests_before = demo.emulator.requests if demo.emulator is not None else None
    demo.say(
        f"Same task, capped at {render.dollars(cap)}: each call reserves an estimate of "
        f"{render.dollars(estimate)} (the mean of section 2's calls) before it is sent."
    )
    try:
        _run_agent(demo, "guard", policy=policy, tracker=guard_tracker)
    except Exception as exc:
        error = _budget_error(exc)
        if error is None:
            raise
        spent = guard_tracker.totals().total
        demo.say(
            f"Stopped cleanly after {spent.calls} model call(s): {error.message}",
            f"  spent {render.dollars(spent.cost_micro)} of the {render.dollars(cap)} cap "
            f"(window={error.window!r}, retryable={error.is_retryable})",
        )
        if requests_before is not None:
            sent = demo.emulator.requests - requests_before
            demo.say(f"  requests sent: {sent}; the refused call never reached the server.")
        return
    demo.say("The agent finished within the cap (its calls were cheaper than estimated).")


SECTIONS: tuple[Callable[[Demo], None], ...] = (section_rag, section_agent, section_budget, section_guard)


# -- driver -----------------------------------------------------------------------------


def _connection(
    stack: ExitStack, api_key: str | None, base_url: str | None, env: Mapping[str, str]
) -> tuple[dict[str, Any], Any, str]:
    key = api_key or env.get(ENV_API_KEY)
    if key:
        url = base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        return (
            {"api_key": key, "base_url": url},
            None,
            f"Running against the Nebo API at {url} ({ENV_API_KEY} is set).",
        )
    from nebo_emulator import NeboEmulator

    emu = stack.enter_context(NeboEmulator())
    note = (
        f"{ENV_API_KEY} is not set, so this demo runs against a local Nebo emulator it started at "
        f"{emu.base_url}.\nSet {ENV_API_KEY} to run it against the live API."
    )
    return {"api_key": emu.token, "base_url": emu.base_url}, emu, note


def run_demo(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    out: TextIO,
    ascii: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the four sections; returns 0. Errors propagate to the CLI, which prints them."""
    env = os.environ if environ is None else environ
    started = time.perf_counter()
    with ExitStack() as stack:
        conn, emulator, note = _connection(stack, api_key, base_url, env)
        demo = Demo(conn, out, ascii, emulator=emulator)
        demo.say("Nebo integrations demo", note)
        for title, section in zip(SECTION_TITLES, SECTIONS, strict=True):
            demo.title(title)
            section(demo)
    demo.say("", f"Done in {time.perf_counter() - started:.1f}s.")
    return 0


def iter_sections() -> Iterator[str]:
    """The section titles, in order (what tests look for in the output)."""
    yield from SECTION_TITLES

"""Pickling and copying: the token never pickles; an unpickled copy rebuilds from NEBO_API_KEY."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from llama_index_nebo import Nebo, NeboEmbedding
from nebo_core import BudgetTracker, NeboConfigurationError
from nebo_core.tracker import default_tracker
from nebo_emulator import NeboEmulator

QUESTION = "Context: The Larkspur refund window is 30 days.\nQuestion: How long is the refund window?"


@pytest.fixture
def shared_tracker() -> Iterator[BudgetTracker]:
    tracker = default_tracker()
    tracker.reset()
    yield tracker
    tracker.reset()


def _use(component: Nebo | NeboEmbedding) -> None:
    if isinstance(component, Nebo):
        answer = component.chat([ChatMessage(role=MessageRole.USER, content=QUESTION)])
        assert "30 days" in (answer.message.content or "")
    else:
        assert len(component.get_text_embedding("refund window")) == 1536


async def _ause(component: Nebo | NeboEmbedding) -> None:
    if isinstance(component, Nebo):
        answer = await component.achat([ChatMessage(role=MessageRole.USER, content=QUESTION)])
        assert "30 days" in (answer.message.content or "")
    else:
        assert len(await component.aget_text_embedding("refund window")) == 1536


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
async def test_unpickled_copy_rebuilds_from_fields_and_env(
    cls: type[Nebo | NeboEmbedding],
    emu: NeboEmulator,
    tracker: BudgetTracker,
    shared_tracker: BudgetTracker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = cls(api_key=emu.token, base_url=emu.base_url, timeout=7.0, max_retries=1, tracker=tracker)
    _use(original)  # clients built before pickling must not matter
    data = pickle.dumps(original)
    assert emu.token.encode() not in data
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    clone = pickle.loads(data)
    assert (clone.base_url, clone.timeout, clone.max_retries) == (emu.base_url, 7.0, 1)
    _use(clone)
    await _ause(clone)
    assert clone._clients.settings.timeout == 7.0
    assert clone._clients.settings.max_retries == 1
    # The tracker given at construction stays in this process; the copy uses the default one.
    assert clone.tracker is shared_tracker
    assert shared_tracker.totals().total.calls == 2
    assert tracker.totals().total.calls == 1


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
def test_unpickled_copy_without_key_names_the_fix(cls: type[Nebo | NeboEmbedding], emu: NeboEmulator) -> None:
    clone = pickle.loads(pickle.dumps(cls(api_key=emu.token, base_url=emu.base_url)))
    with pytest.raises(NeboConfigurationError, match="not pickled.*set NEBO_API_KEY") as info:
        _use(clone)
    assert emu.token not in str(info.value)


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
def test_deepcopy_keeps_token_and_tracker(
    cls: type[Nebo | NeboEmbedding], emu: NeboEmulator, tracker: BudgetTracker
) -> None:
    original = cls(api_key=emu.token, base_url=emu.base_url, tracker=tracker)
    for clone in (copy.deepcopy(original), original.model_copy(deep=True)):
        _use(clone)
        assert clone.tracker is tracker
    assert tracker.totals().total.calls == 2


def test_pickling_logs_no_unpickleable_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        pickle.dumps(Nebo(api_key="tok"))
    assert [r.getMessage() for r in caplog.records] == []

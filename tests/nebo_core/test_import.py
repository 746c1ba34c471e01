"""``import nebo_core`` is cheap and framework-free: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, json, sys
    BLOCKED = ("langchain", "langchain_core", "llama_index", "openai")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run(code: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_import_is_cheap_and_framework_free() -> None:
    out = run(
        """
        import nebo_core
        loaded_after_import = "httpx" in sys.modules
        from nebo_core import NeboSettings, BudgetTracker, StreamState  # noqa: F401
        import nebo_core.wire, nebo_core.policy  # noqa: F401
        loaded_after_core = "httpx" in sys.modules
        nebo_core.NeboClient
        loaded_after_client = "httpx" in sys.modules
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({"import": loaded_after_import, "core": loaded_after_core,
                          "client": loaded_after_client, "heavy": heavy, "version": nebo_core.__version__}))
        """
    )
    assert out["import"] is False
    assert out["core"] is False
    assert out["client"] is True
    assert out["heavy"] == []
    assert out["version"]


def test_blocker_really_blocks() -> None:
    out = run(
        """
        try:
            import openai
            ok = True
        except ImportError:
            ok = False
        print(json.dumps({"ok": ok}))
        """
    )
    assert out == {"ok": False}


def test_all_is_pinned() -> None:
    import nebo_core

    assert sorted(nebo_core.__all__) == sorted(
        [
            "AsyncChatStream",
            "AsyncNeboClient",
            "BudgetPolicy",
            "BudgetSnapshot",
            "BudgetTracker",
            "CallPlan",
            "ChatCompletion",
            "ChatStream",
            "Decision",
            "EmbeddingResult",
            "ModelInfo",
            "ModelSpec",
            "NeboAuthenticationError",
            "NeboBadRequestError",
            "NeboBudgetExhausted",
            "NeboClient",
            "NeboConfigurationError",
            "NeboConnectionError",
            "NeboContextLengthError",
            "NeboError",
            "NeboRateLimited",
            "NeboSettings",
            "NeboStreamError",
            "NeboStreamTruncated",
            "NeboUpstreamError",
            "RetryPolicy",
            "Secret",
            "StreamState",
            "TrackerTotals",
            "UsageRecord",
            "UsageReport",
            "WindowState",
            "__version__",
            "async_openai_client",
            "default_policy",
            "default_tracker",
            "get_model",
            "openai_client",
        ]
    )


@pytest.mark.parametrize(
    "name", ["NeboClient", "BudgetSnapshot", "StreamState", "default_tracker", "NeboError"]
)
def test_lazy_names_resolve(name: str) -> None:
    import nebo_core

    assert getattr(nebo_core, name).__name__ == name


def test_unknown_name_raises_attribute_error() -> None:
    import nebo_core

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        nebo_core.Nope  # noqa: B018

"""``import nebo_core`` is cheap and framework-free (checked in a fresh interpreter), and the
package graph is a DAG with no ``nebo_core._private`` import outside ``nebo_core`` (checked on
the sources with ``ast``)."""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

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


def test_render_and_cli_are_framework_free() -> None:
    """The CLI needs neither framework (only ``nebo demo`` does), so neither do the modules it imports."""
    out = run(
        """
        import nebo_demo.render
        after_render = sorted(m for m in sys.modules if m.startswith(("langchain", "llama_index")))
        import nebo_cli
        after_cli = sorted(m for m in sys.modules if m.startswith(("langchain", "llama_index")))
        demo = "nebo_demo._demo" in sys.modules
        print(json.dumps({"render": after_render, "cli": after_cli, "demo": demo}))
        """
    )
    assert out == {"render": [], "cli": [], "demo": False}


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
            "BudgetForecast",
            "Cap",
            "Degrade",
            "LaneRule",
            "Pace",
            "WindowForecast",
            "NeboBudgetStoreUnavailable",
            "NeboStoreError",
            "NeboStoreStateLost",
            "MAX_EMBEDDING_BATCH",
            "NeboProvider",
            "AsyncNeboClient",
            "AsyncNeboTransport",
            "BudgetPolicy",
            "BudgetSnapshot",
            "BudgetTracker",
            "CallPlan",
            "ChatCompletion",
            "ChatStream",
            "Decision",
            "EmbeddingResult",
            "Go",
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
            "NeboTransport",
            "NeboTimeoutError",
            "NeboUpstreamError",
            "Refuse",
            "RetryPolicy",
            "SSEDecoder",
            "Secret",
            "StreamState",
            "TrackerTotals",
            "UsageRecord",
            "UsageReport",
            "Wait",
            "WindDown",
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


# -- the package graph, from the sources ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nebo_core", "nebo_emulator", "langchain_nebo", "llama_index_nebo", "nebo_demo", "nebo_cli")
MAY_IMPORT = {
    "nebo_core": set(),
    "nebo_emulator": {"nebo_core"},
    "langchain_nebo": {"nebo_core"},
    "llama_index_nebo": {"nebo_core"},
    "nebo_demo": {"nebo_core", "nebo_emulator", "langchain_nebo", "llama_index_nebo"},
    "nebo_cli": {"nebo_core", "nebo_emulator", "nebo_demo"},
}


# removed by the engine rewrite
def sources(package: str) -> Iterator[tuple[str, ast.Module]]:
    """Each module of ``package`` as (path relative to the repo, syntax tree)."""
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"), str(path))


def imported(tree: ast.Module) -> Iterator[str]:
    """Every absolute import in ``tree`` (function-level and TYPE_CHECKING ones too), as dotted names:
    ``from a.b import c`` gives ``a.b.c``, since ``c`` may be a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def is_core_private(name: str) -> bool:
    """``nebo_core._x``, ``nebo_core._x.y``, ``nebo_core.stores._x``; dunders (``__version__``) are public."""
    first, *rest = name.split(".")
    return first == "nebo_core" and any(private(p) for p in rest)


def first_private(name: str) -> str:
    """``nebo_core._streams.ChatStream`` -> ``nebo_core._streams``: the private module (or name) imported."""
    parts = name.split(".")
    end = next(i for i, p in enumerate(parts) if i and private(p))
    return ".".join(parts[: end + 1])


def package_edges() -> dict[str, set[str]]:
    """Which of our top-level packages each of them imports."""
    return {
        package: {
            top
            for _, tree in sources(package)
            for name in imported(tree)
            if (top := name.split(".")[0]) in PACKAGES and top != package
        }
        for package in PACKAGES
    }


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "nebo_core"])
def test_no_core_private_import_outside_core(package: str) -> None:
    found = {
        (path, first_private(name))
        for path, tree in sources(package)
        for name in imported(tree)
        if is_core_private(name)
    }
    assert found == set()


@pytest.mark.parametrize(
    ("name", "private"),
    [
        ("nebo_core._base", True),
        ("nebo_core.__private", True),
        ("nebo_core._streams.ChatStream", True),
        ("nebo_core.stores._redis", True),
        ("nebo_core.budget._helper", True),
        ("nebo_core.__version__", False),
        ("nebo_core.models.MODELS", False),
        ("nebo_core", False),
        ("nebo_emulator._app", False),
    ],
)
def test_is_core_private(name: str, private: bool) -> None:
    assert is_core_private(name) is private


def test_the_rule_sees_every_import_form() -> None:
    tree = ast.parse(
        "import nebo_core._a\n"
        "from nebo_core._b import x\n"
        "from nebo_core import _c, public\n"
        "def f():\n"
        "    from nebo_core.stores import _d\n"
        "from . import _mine\n"
    )
    assert {first_private(n) for n in imported(tree) if is_core_private(n)} == {
        "nebo_core._a",
        "nebo_core._b",
        "nebo_core._c",
        "nebo_core.stores._d",
    }


def test_packages_import_only_downwards() -> None:
    edges = package_edges()
    assert {p: sorted(edges[p] - MAY_IMPORT[p]) for p in PACKAGES} == {p: [] for p in PACKAGES}


def test_package_graph_has_no_cycle() -> None:
    list(graphlib.TopologicalSorter(package_edges()).static_order())  # CycleError on a cycle
    order = list(graphlib.TopologicalSorter(MAY_IMPORT).static_order())
    assert (order[0], order[-1]) == ("nebo_core", "nebo_cli")

"""LlamaIndex's own layout (issue 13): ``from llama_index.llms.nebo import Nebo`` and
``from llama_index.embeddings.nebo import NeboEmbedding`` work from this distribution, as portions
of the ``llama_index`` namespace package beside llama-index-core, and only re-export."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTIONS = ("llama_index/llms/nebo/__init__.py", "llama_index/embeddings/nebo/__init__.py")


def test_both_import_in_a_fresh_interpreter_beside_llama_index_core() -> None:
    code = """
import json, llama_index, llama_index.core
from llama_index.llms.nebo import Nebo
from llama_index.embeddings.nebo import NeboEmbedding
import llama_index.llms.nebo as llms, llama_index.embeddings.nebo as embeddings
import llama_index_nebo
print(json.dumps({
    "same": [Nebo is llama_index_nebo.Nebo, NeboEmbedding is llama_index_nebo.NeboEmbedding],
    "all": [llms.__all__, embeddings.__all__],
    "namespace": getattr(llama_index, "__file__", None) is None,
    "core": llama_index.core.__name__,
}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "same": [True, True],
        "all": [["Nebo"], ["NeboEmbedding"]],
        "namespace": True,
        "core": "llama_index.core",
    }


def test_no_init_above_the_portions() -> None:
    # An __init__.py in llama_index/, llama_index/llms/ or llama_index/embeddings/ would shadow
    # llama-index-core and every partner package, as it does not ship one either.
    tree = ROOT / "llama_index"
    assert sorted(p.relative_to(ROOT).as_posix() for p in tree.rglob("*.py")) == sorted(PORTIONS)


@pytest.mark.parametrize("portion", PORTIONS)
def test_portions_only_re_export_from_llama_index_nebo(portion: str) -> None:
    tree = ast.parse((ROOT / portion).read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(type(n).__name__, getattr(n, "module", None)) for n in imports] == [
        ("ImportFrom", "llama_index_nebo")
    ]


def test_the_wheel_config_ships_the_portions() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "llama_index" in config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


@pytest.mark.skipif(importlib.util.find_spec("hatchling") is None, reason="needs hatchling to build offline")
def test_the_built_wheel_holds_the_portions(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.startswith("llama_index/")) == sorted(PORTIONS)

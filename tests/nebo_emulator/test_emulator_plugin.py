"""The pytest plugin: fixtures, the configuring mark, and a light import; plus the public names."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

import nebo_emulator
from nebo_emulator import NeboEmulator

TLS = ssl.create_default_context()
Factory = Callable[..., NeboEmulator]


def test_fixture_yields_a_running_emulator(nebo_emulator: NeboEmulator) -> None:
    assert isinstance(nebo_emulator, NeboEmulator)
    with httpx.Client(verify=TLS) as c:
        response = c.get(
            nebo_emulator.base_url + "/usage", headers={"Authorization": f"Bearer {nebo_emulator.token}"}
        )
    assert response.status_code == 200
    assert nebo_emulator.quirks


@pytest.mark.nebo_emulator(plan="pro", strict_openai=True, gift_micro=42)
def test_the_mark_configures_the_fixture(nebo_emulator: NeboEmulator) -> None:
    assert not nebo_emulator.quirks
    with httpx.Client(verify=TLS) as c:
        body = c.get(
            nebo_emulator.base_url + "/usage", headers={"Authorization": f"Bearer {nebo_emulator.token}"}
        ).json()
    assert body["plan"] == "pro"
    assert body["grants"]["gift_available"] == 42


def test_factory_starts_several_and_stops_them(nebo_emulator_factory: Factory) -> None:
    a = nebo_emulator_factory(plan="free")
    b = nebo_emulator_factory()
    assert a.base_url != b.base_url


def test_imports_stay_light() -> None:
    """The plugin (loaded in every pytest run) pulls in nothing; the emulator only the standard library."""
    code = (
        "import sys, nebo_emulator.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith('nebo_emulator._'))); "
        "from nebo_emulator import NeboEmulator; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'httpx', 'httpx2', 'openai', 'pydantic', 'langchain_core', 'llama_index'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "[]"]


def test_public_names_are_pinned() -> None:
    assert nebo_emulator.__all__ == [
        "FAULT_KINDS",
        "BudgetView",
        "Clock",
        "EmulatorClock",
        "Fault",
        "LedgerEntry",
        "NeboEmulator",
        "serve",
    ]

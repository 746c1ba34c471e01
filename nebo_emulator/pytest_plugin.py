"""pytest plugin: a running Nebo emulator as a fixture, for this project's tests and users' own.

Registered through the ``pytest11`` entry point, so it loads in every pytest run of
everyone who installs the package: it imports nothing at module level beyond pytest,
and the emulator only when a test asks for it. Fixtures:

- ``nebo_emulator``: a started ``NeboEmulator``, stopped after the test. Configure it
  with ``@pytest.mark.nebo_emulator(plan="pro", strict_openai=True, ...)``.
- ``nebo_emulator_factory``: call it with ``NeboEmulator`` keyword arguments to start as
  many emulators as a test needs; all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nebo_emulator import NeboEmulator


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker that configures the ``nebo_emulator`` fixture."""
    config.addinivalue_line(
        "markers",
        "nebo_emulator(**kwargs): keyword arguments for the NeboEmulator behind the nebo_emulator fixture",
    )


@pytest.fixture
def nebo_emulator_factory() -> Iterator[Callable[..., NeboEmulator]]:
    """A function that starts a ``NeboEmulator(**kwargs)``; every one it starts is stopped afterwards."""
    from nebo_emulator import NeboEmulator

    started: list[NeboEmulator] = []

    def start(**kwargs: Any) -> NeboEmulator:
        emulator = NeboEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    try:
        yield start
    finally:
        for emulator in reversed(started):
            emulator.stop()


@pytest.fixture
def nebo_emulator(
    request: pytest.FixtureRequest, nebo_emulator_factory: Callable[..., NeboEmulator]
) -> NeboEmulator:
    """A started Nebo emulator (quirks on, default budget) unless a ``nebo_emulator`` mark says otherwise."""
    marker = request.node.get_closest_marker("nebo_emulator")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    return nebo_emulator_factory(**kwargs)

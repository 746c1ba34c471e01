"""Root test fixtures: a real ``redis-server`` on a free loopback port, for the Redis budget tests.

The server runs in a temp dir with persistence off and is stopped after the session. If the
binary is missing, Redis tests skip with the reason locally, and fail when ``CI=true``
(``.ci/run`` installs redis-server, so a missing one there is a broken CI, not a skip).

It also loads the shared raw loopback server (``_raw_server.py``) as the module
``nebo_test_raw_server``: under ``--import-mode=importlib`` no test file or conftest can import a
sibling, but this conftest is imported before any other, so they can ``import nebo_test_raw_server``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

RAW_SERVER_MODULE = "nebo_test_raw_server"


def _load_raw_server() -> None:
    if RAW_SERVER_MODULE in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        RAW_SERVER_MODULE, Path(__file__).with_name("_raw_server.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[RAW_SERVER_MODULE] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)


_load_raw_server()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = _free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (``redis://127.0.0.1:PORT/0``) of a private redis-server for this test session."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server); Redis budget tests need it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):  # server start-up, not a test: polling here is fine
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port} (exit code {proc.poll()})")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _redis_binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        reason = f"{name} is not installed (apt-get install redis-server); Redis budget tests need it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 3-node Redis Cluster (three masters on loopback, no replicas) for this session: the
    URL of one node (``redis://127.0.0.1:PORT/0``; a cluster client discovers the others)."""
    server, cli = _redis_binary("redis-server"), _redis_binary("redis-cli")
    ports = [_free_cluster_port() for _ in range(3)]
    procs = []
    try:
        for port in ports:
            workdir = tmp_path_factory.mktemp(f"cluster-{port}")
            args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf")]
            procs.append(
                subprocess.Popen(
                    [*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + 30
        while not all(_ping(port) for port in ports):
            if time.monotonic() > deadline:
                codes = [proc.poll() for proc in procs]
                pytest.fail(f"redis cluster nodes did not start on ports {ports} (exit codes {codes})")
            time.sleep(0.02)
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        while True:  # every slot assigned and agreed on
            info = subprocess.run(
                [cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True, timeout=5
            ).stdout
            if "cluster_state:ok" in info:
                break
            if time.monotonic() > deadline + 20:
                pytest.fail(f"redis cluster did not become ready: {info}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session Redis, flushed after the test."""
    yield redis_server
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()


README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="session")
def readme_block() -> Callable[[str], str]:
    """The README's python example tagged ``<!-- example: NAME -->``, so tests run the README as written."""
    import re

    text = README.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"<!-- example: ([\w-]+) -->\s*```python\n(.*?)```", text, re.S))

    def get(name: str) -> str:
        if name not in blocks:
            raise KeyError(f"README.md has no python block tagged <!-- example: {name} -->")
        return blocks[name]

    return get


@pytest.fixture
def run_example(
    readme_block: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[dict[str, Any], str]]:
    """Run a README example against an emulator as a reader would: ``NEBO_*`` set, stdout captured.

    ``run_example(name, emu, **env)`` returns the example's globals and what it printed."""
    import contextlib
    import io

    def run(name: str, emu: Any, **env: str) -> tuple[dict[str, Any], str]:
        monkeypatch.setenv("NEBO_API_KEY", emu.token)
        monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        namespace: dict[str, Any] = {}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(readme_block(name), f"README:{name}", "exec"), namespace)
        finally:
            run.namespace = namespace  # type: ignore[attr-defined]  # for cleanup after a failure
        return namespace, out.getvalue()

    return run


# --- fresh budget state and an emulator, shared by the adapter and telemetry suites ------------


@pytest.fixture
def emu() -> Iterator[Any]:
    """A fresh emulator per test: its ledger holds exactly this test's charges."""
    from nebo_emulator import NeboEmulator

    with NeboEmulator(latency=0.0) as emulator:
        yield emulator


@pytest.fixture
def tracker() -> Any:
    """A fresh tracker per test, so totals never leak between tests."""
    from nebo_core import BudgetTracker

    return BudgetTracker()


@pytest.fixture
def policy() -> Any:
    """A fresh policy per test (the process-wide default remembers exhausted snapshots)."""
    from nebo_core import BudgetPolicy

    return BudgetPolicy()


@pytest.fixture
def conn(emu: Any, tracker: Any, policy: Any) -> dict[str, Any]:
    """Keyword arguments pointing any Nebo entry point at the emulator, with fresh budget state."""
    return {"api_key": emu.token, "base_url": emu.base_url, "tracker": tracker, "policy": policy}

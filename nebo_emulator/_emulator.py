"""``NeboEmulator``: the public face of the emulator, and ``serve()`` for the CLI.

It wires the pieces together (clock, accountant, fault queue, app, HTTP server) and
exposes what tests need: ``base_url`` and ``token`` to connect, the clock to move time,
the ledger to check that nothing was lost, ``inject`` for faults and ``set_budget`` to
start from any account state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any

from nebo_emulator._accounting import SESSION_WINDOW, WEEKLY_WINDOW, Accountant, LedgerEntry
from nebo_emulator._app import App, AppConfig
from nebo_emulator._auth import DEFAULT_EMAIL, DEFAULT_SUB, FAR_FUTURE_EXP, make_jwt
from nebo_emulator._clock import Clock, EmulatorClock
from nebo_emulator._faults import Fault, FaultQueue
from nebo_emulator._http import HttpServer


def _window(name: str, seconds: float | None, default: timedelta) -> timedelta:
    if seconds is None:
        return default
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return timedelta(seconds=seconds)


class NeboEmulator:
    """A local, protocol-faithful Nebo (Janus) server on loopback, for demos, tests and CI.

    Use it as a context manager (``with NeboEmulator() as emu:``) or call ``start()`` and
    ``stop()``. Standard library only; one account per emulator, shared by every token.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        plan: str = "plus",
        session_limit_micro: int = 10_000_000,
        weekly_limit_micro: int = 50_000_000,
        free_micro: int = 0,
        gift_micro: int = 0,
        credits_cents: int = 0,
        quirks: bool = True,
        strict_openai: bool = False,
        tokens: Iterable[str] | None = None,
        accept_any_jwt: bool = True,
        latency: float = 0.0,
        clock: Clock | None = None,
        session_window_s: float | None = None,
        weekly_window_s: float | None = None,
    ) -> None:
        """``session_window_s`` / ``weekly_window_s`` shorten the rolling windows (5 h and 7 d by
        default) so pacing and forecasts can be tested in real time; with either one and no
        ``clock``, the clock ticks for real."""
        self.host = host
        self._port = port
        self.plan = plan
        self.quirks = quirks and not strict_openai
        self.strict_openai = strict_openai
        short = session_window_s is not None or weekly_window_s is not None
        self.clock: Clock = clock if clock is not None else EmulatorClock(frozen=not short)
        claims = {"sub": DEFAULT_SUB, "email": DEFAULT_EMAIL, "plan": plan, "exp": FAR_FUTURE_EXP}
        self.token = make_jwt(claims)
        self._accountant = Accountant(
            clock=self.clock.now,
            session_limit_micro=session_limit_micro,
            weekly_limit_micro=weekly_limit_micro,
            free_micro=free_micro,
            gift_micro=gift_micro,
            credits_cents=credits_cents,
            session_window=_window("session_window_s", session_window_s, SESSION_WINDOW),
            weekly_window=_window("weekly_window_s", weekly_window_s, WEEKLY_WINDOW),
        )
        self._faults = FaultQueue()
        self._stopped = threading.Event()
        config = AppConfig(plan, self.quirks, frozenset([self.token, *(tokens or ())]), accept_any_jwt)
        self._app = App(config, self.clock, self._accountant, self._faults, self._sleep)
        self._app.latency = latency
        self._http: HttpServer | None = None

    def _sleep(self, seconds: float) -> None:
        # Latency and delay faults wait on the stop event, so stop() never hangs on them.
        self._stopped.wait(seconds)

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self) -> NeboEmulator:
        """Bind the port and start serving in a background thread; returns ``self``."""
        if self._http is None:
            self._stopped.clear()
            self._http = HttpServer(self._app, self.host, self._port)
            self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; pending delays end at once."""
        self._stopped.set()
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> NeboEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # Connection --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the requested one until started)."""
        return self._http.address[1] if self._http is not None else self._port

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``, what a client takes as its base URL."""
        if self._http is None:
            raise RuntimeError("the emulator is not running; call start() or use it as a context manager")
        host, port = self._http.address
        return f"http://{host}:{port}/v1"

    def make_token(
        self,
        *,
        plan: str | None = None,
        exp: int | None = None,
        sub: str = DEFAULT_SUB,
        email: str = DEFAULT_EMAIL,
        **claims: Any,
    ) -> str:
        """Mint a JWT-shaped token with these claims; accepted even with ``accept_any_jwt=False``."""
        payload: dict[str, Any] = {"sub": sub, "email": email, "exp": FAR_FUTURE_EXP if exp is None else exp}
        if plan is not None:
            payload["plan"] = plan
        token = make_jwt({**payload, **claims})
        self._app.accept(token)
        return token

    # Observation -------------------------------------------------------------------------------

    @property
    def ledger(self) -> list[LedgerEntry]:
        """A snapshot copy of every charged request, in charge order."""
        return self._accountant.ledger()

    def ledger_total_micro(self) -> int:
        """The sum of every charge, in microdollars."""
        return sum(entry.cost_micro for entry in self._accountant.ledger())

    @property
    def requests(self) -> int:
        """HTTP requests received so far, errors included."""
        return self._app.requests

    def requests_in_flight(self) -> int:
        """Requests being served right now (a delayed one bills even after its client gave up)."""
        return self._app.in_flight

    @property
    def latency(self) -> float:
        """Seconds added to every request (emulated network latency)."""
        return self._app.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._app.latency = float(seconds)

    # Control -----------------------------------------------------------------------------------

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        """Script ``kind`` for the next ``count`` requests; ``ValueError`` for an unknown kind or param."""
        self._faults.inject(Fault.make(kind, **params), count)

    def clear_faults(self) -> None:
        """Forget every fault not yet consumed."""
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """Scripted faults not yet consumed."""
        return len(self._faults)

    def set_budget(
        self,
        *,
        session_remaining_micro: int | None = None,
        weekly_remaining_micro: int | None = None,
        free_micro: int | None = None,
        gift_micro: int | None = None,
        credits_cents: int | None = None,
    ) -> None:
        """Force the account state (``None`` leaves a value as it is); the ledger is untouched."""
        self._accountant.set_budget(
            session_remaining_micro=session_remaining_micro,
            weekly_remaining_micro=weekly_remaining_micro,
            free_micro=free_micro,
            gift_micro=gift_micro,
            credits_cents=credits_cents,
        )


def serve(host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
    """Run an emulator in the foreground until Ctrl-C (what ``nebo emulator`` calls).

    Unless a clock is given, time ticks for real, so a long-running server's windows roll.
    """
    kwargs.setdefault("clock", EmulatorClock(frozen=False))
    emulator = NeboEmulator(host=host, port=port, **kwargs)
    with emulator:
        print(f"Nebo emulator listening on {emulator.base_url}", flush=True)
        # Shell lines, so `eval "$(nebo emulator | head -3 | tail -2)"` or a copy-paste works.
        print(f"export NEBO_BASE_URL={emulator.base_url}", flush=True)
        print(f"export NEBO_API_KEY={emulator.token}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass

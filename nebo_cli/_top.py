"""``nebo top`` and ``nebo usage --watch``: live views that redraw a frame until Ctrl-C.

Two sources feed a frame: a budget store shared by a fleet (Redis: every line's spend,
holds and caps, and the snapshot the fleet's last call published) or, without a store,
``GET /v1/usage`` polled through a :class:`~nebo_core.client.NeboClient`, whose tracker
sees every response. Either way a local :class:`~nebo_core.tracker.BudgetTracker` keeps
the readings the forecast rests on, so the burn rate appears from the second frame on.
:func:`live` is the only loop: it draws, sleeps to the next tick (``sleep`` and ``clock``
are parameters) and stops after ``count`` frames or at Ctrl-C. What a frame looks like is
:mod:`nebo_cli._view`'s business.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, Protocol, TextIO

from nebo_cli._view import TopFrame, lanes_of, render_top
from nebo_core.budget import BudgetSnapshot
from nebo_core.errors import NeboConfigurationError, NeboError, NeboStoreError
from nebo_core.settings import NeboSettings
from nebo_core.stores import BudgetStore
from nebo_core.tracker import BudgetTracker

HOME_AND_CLEAR = "\x1b[H\x1b[J"
"""Cursor to the top left, then clear to the end: each frame overwrites the last without a flash."""
CLEAR_SCREEN = "\x1b[2J"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def lanes_from(*owners: Any) -> dict[str, dict[str, int]] | None:
    """Lane counts from the first owner (a store or a policy) with a callable ``lanes()``."""
    for owner in owners:
        method = getattr(owner, "lanes", None)
        if callable(method):
            return lanes_of(method())
    return None


class FrameSource(Protocol):
    """Something that can say what the budget looks like now."""

    def frame(self) -> TopFrame: ...


class StoreSource:
    """Frames from a budget store: its lines, and the snapshot published for ``account``.

    Each newer published snapshot feeds a local tracker (once: a repeated reading would fake a
    zero rate), so the forecast follows the fleet's spend as the store sees it."""

    def __init__(self, store: BudgetStore, account: str | None, source: str, tracker: BudgetTracker) -> None:
        self.store = store
        self.account = account
        self.source = source
        self.tracker = tracker
        self._fed: datetime | None = None

    def frame(self) -> TopFrame:
        with redis_errors():
            snapshot = self.store.snapshot(self.account)
            lines = tuple(self.store.lines())
        if snapshot is not None and (self._fed is None or snapshot.observed_at > self._fed):
            self.tracker.observe(snapshot)
            self._fed = snapshot.observed_at
        forecast = self.tracker.forecast(self.account) if self._fed is not None else None
        return TopFrame(
            at=_utcnow(),
            source=self.source,
            account=self.account,
            snapshot=snapshot,
            forecast=forecast,
            lines=lines,
            lanes=lanes_from(self.store),
        )


class PollSource:
    """Frames from ``GET /v1/usage`` (the client's tracker observes each response)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def frame(self) -> TopFrame:
        report = self.client.usage()
        tracker: BudgetTracker = self.client.tracker
        snapshot: BudgetSnapshot | None = tracker.snapshot or report.snapshot
        account = snapshot.account if snapshot is not None else None
        policy = self.client.policy
        return TopFrame(
            at=_utcnow(),
            source="local tracker (polling /v1/usage)",
            account=account,
            snapshot=snapshot,
            forecast=tracker.forecast(account),
            lines=None,
            lanes=lanes_from(policy, policy.store),
        )


def account_of(args: Any) -> str | None:
    """The account whose snapshot to read: ``--account``, else the id of the configured key (if any)."""
    if getattr(args, "account", None):
        return str(args.account)
    try:
        return NeboSettings.resolve(api_key=args.api_key, base_url=args.base_url).account
    except NeboConfigurationError:
        return None


def open_store(args: Any) -> BudgetStore:
    """The Redis store ``--redis``/``--cluster``/``--namespace`` name (``redis`` imported only then)."""
    from nebo_core.stores import RedisBudgetStore

    url = str(args.redis)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise NeboConfigurationError(
            f"--redis must be a URL starting with redis://, rediss:// or unix:// "
            f"(e.g. redis://127.0.0.1:6379/0); got {url.split('@')[-1]!r}"
        )
    with redis_errors():
        return RedisBudgetStore.from_url(url, namespace=args.namespace, cluster=args.cluster)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Translate what the redis client raises past the store (a cluster that cannot be reached at
    all raises ``RedisClusterException``, which is no ``RedisError``) into :class:`NeboStoreError`."""
    try:
        yield
    except NeboError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "redis":
            raise
        first = (str(exc).splitlines() or [""])[0][:200]
        raise NeboStoreError(f"the Redis budget store failed: {type(exc).__name__}: {first}") from None


def live(
    draw: Callable[[], str],
    out: TextIO,
    *,
    interval: float,
    count: int | None,
    redraw: bool,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Print ``draw()`` every ``interval`` seconds, ``count`` times (``None``: until Ctrl-C).

    ``redraw``: overwrite the previous frame in place (a terminal); else frames follow each other
    (a pipe or a file gets every frame, separated by a blank line). Returns the frames drawn."""
    drawn = 0
    start = clock()
    try:
        while count is None or drawn < count:
            text = draw()  # before the screen is cleared: a first frame that fails leaves it as it was
            if redraw:
                out.write((CLEAR_SCREEN if not drawn else "") + HOME_AND_CLEAR + text + "\n")
            else:
                out.write(("\n" if drawn and "\n" in text else "") + text + "\n")
            out.flush()
            drawn += 1
            if count is not None and drawn >= count:
                break
            # Ticks are counted from the start, so a slow frame does not push the next ones back.
            sleep(max(start + drawn * interval - clock(), 0.0))
    except KeyboardInterrupt:  # Ctrl-C is how a live view ends: not an error
        out.write("\n")
    return drawn


def dump(frame: TopFrame, *, pretty: bool) -> str:
    """A frame as JSON: indented for one frame, one line each for a stream (JSON Lines)."""
    return json.dumps(frame.to_dict(), indent=2 if pretty else None)


def run_top(args: Any, out: TextIO, make_client: Callable[[Any], Any], ascii: bool) -> int:
    """``nebo top``: frames from ``--redis`` or, without it, from polling ``/v1/usage``."""
    count = 1 if args.once else args.frames
    with _source(args, make_client) as source:

        def draw() -> str:
            frame = source.frame()
            return dump(frame, pretty=args.once) if args.json else render_top(frame, ascii=ascii)

        redraw = not args.json and count != 1 and is_terminal(out)
        live(draw, out, interval=args.interval, count=count, redraw=redraw)
    return 0


class _Opened:
    """A frame source and what to close after it (the store or the client it owns)."""

    def __init__(self, source: FrameSource, closers: Iterable[Callable[[], None]]) -> None:
        self.source = source
        self.closers = list(closers)

    def __enter__(self) -> FrameSource:
        return self.source

    def __exit__(self, *exc: object) -> None:
        for close in self.closers:
            close()


def _source(args: Any, make_client: Callable[[Any], Any]) -> _Opened:
    if args.redis is None:
        client = make_client(args)
        return _Opened(PollSource(client), [client.close])
    store = open_store(args)
    try:
        account = account_of(args)
        source = StoreSource(store, account, f"redis namespace {args.namespace}", BudgetTracker())
        return _Opened(source, [_closer(store)])
    except BaseException:
        _closer(store)()
        raise


def _closer(store: BudgetStore) -> Callable[[], None]:
    close = getattr(store, "close", None)
    return close if callable(close) else (lambda: None)


def is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty()) if callable(isatty) else False

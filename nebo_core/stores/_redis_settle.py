"""Settlements sent behind: the Redis store's queue of settlements not yet in Redis.

A call is settled once its answer is in hand, so the caller need not wait for Redis to take
the settlement: one round trip per capped call (its reservation) instead of two.
:meth:`RedisBudgetStore.commit_nowait <nebo_core.stores.RedisBudgetStore.commit_nowait>`
queues it, with no I/O, and it goes in a batch (one script, each line read and written once):

- within ``settle_within_s`` (0.05 s by default), sent by one flusher thread per process;
- at once when 64 are queued, or when the call's reservation left some capped line room for
  fewer than 32 more such calls: near a cap, every reservation sees every real cost;
- before any read of the store (a process always reads its own writes), and when a client
  closes;
- at exit: ``atexit``, and multiprocessing's own exit for forked workers (which skip
  ``atexit``). A forked child drops the queue it inherited: its parent sends those.

Until it goes, the call's reservation still holds its estimate in Redis, so other processes
see the call as in flight, not as missing (with upper-bound estimates a cap is never passed).
A batch that fails to go stays queued, counts in the policy's ``pending_micro`` and goes again
(a settlement counts once however often it is sent). A process killed with ``kill -9`` loses
what is queued, at most ``settle_within_s`` of settlements: Redis charges their reservations
when their time-to-live passes, as for any call a dead worker left in flight (never
under-counted; reported by ``uncertain()``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from nebo_core.budget import BudgetSnapshot
from nebo_core.stores._base import Reservation

logger = logging.getLogger("nebo_core.budget")

SETTLE_WITHIN_S = 0.05
"""How long a settlement may wait before it is sent (with whatever else is queued then)."""
ROOMY_CALLS = 32
"""A call goes behind only if every capped line it holds had room for this many more calls like
it: near a cap, settlements go at once, so a reservation there sees every real cost."""
MAX_QUEUED = 64
"""A queue this long is sent at once, by the call that filled it."""


@dataclass(frozen=True)
class Queued:
    """One settlement waiting to go: :meth:`BudgetStore.commit`'s arguments."""

    reservation: Reservation
    cost: int
    observed: bool
    estimated: bool
    snapshot: BudgetSnapshot | None
    failed: bool = False
    """It failed to go once (so it counts in :attr:`SettleQueue.unsent_micro` until it goes)."""

    @property
    def account(self) -> str | None:
        """The account whose snapshot it publishes (it goes with that account's calls)."""
        return self.snapshot.account if self.snapshot is not None else None


class SettleQueue:
    """One store's queued settlements; thread-safe. ``flush`` sends them all (the store's
    :meth:`flush`): a queue with settlements in it is held by the flusher, and so is its
    store, until they are sent, even if its owner let go of it."""

    def __init__(self, flush: Callable[[], None] | None, within_s: float) -> None:
        self.within_s = float(within_s)
        self._flush = flush
        self._items: list[tuple[float, Queued]] = []
        """(when queued, the settlement), oldest first."""
        self._roomy: set[str] = set()
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._sending = 0
        """Batches taken by :meth:`take_all` and not yet :meth:`done`: sent, not yet applied."""
        self._failed_micro = 0
        """What the settlements that failed to go once charge, queued or being sent again."""
        self._pid = os.getpid()
        _queues.add(self)

    @property
    def behind(self) -> bool:
        """Whether settlements go behind (a flusher can send them) or are committed at once."""
        return self.within_s > 0 and self._flush is not None

    def roomy(self, reservation_id: str) -> None:
        """Mark a reservation as held with room to spare (:data:`ROOMY_CALLS`): its settlement
        may go behind."""
        with self._lock:
            if len(self._roomy) >= 4096:  # reservations never settled (abandoned calls)
                self._roomy.clear()
            self._roomy.add(reservation_id)

    def claim(self, reservation_id: str, snapshot: BudgetSnapshot | None = None) -> bool:
        """Whether the settlement of ``reservation_id`` goes behind (it can be asked once): it was
        held with room to spare, and its ``snapshot`` does not show the budget exhausted (the
        fleet learns that at once)."""
        with self._lock:
            if reservation_id not in self._roomy:
                return False
            self._roomy.discard(reservation_id)
        return self.behind and not (snapshot is not None and snapshot.exhausted)

    def put(self, queued: Queued) -> bool:
        """Queue ``queued``, sent within ``within_s``; ``True`` when the queue is full (the caller
        sends it now)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: what was queued is the parent's
                self._items, self._pid, self._failed_micro = [], os.getpid(), 0
            self._items.append((time.monotonic(), queued))
            size = len(self._items)
            if size == 1:
                _busy.add(self)
        if size == 1:
            _flusher.wake()
        return size >= MAX_QUEUED

    def take_all(self) -> list[tuple[str | None, list[Queued]]]:
        """Take everything queued, grouped by account (each group is one script call); the
        caller calls :meth:`done` once it has sent them (or put them back)."""
        with self._lock:
            if self._pid != os.getpid():
                self._items, self._pid, self._failed_micro = [], os.getpid(), 0
            items, self._items = self._items, []
            _busy.discard(self)
            self._sending += 1
        groups: dict[str | None, list[Queued]] = {}
        for _, queued in items:
            groups.setdefault(queued.account, []).append(queued)
        return list(groups.items())

    def sent(self, queued: list[Queued]) -> None:
        """``queued`` is applied: what failed of it before no longer counts as unsent."""
        failed = sum(max(q.cost, 0) for q in queued if q.failed)
        if failed:
            with self._lock:
                self._failed_micro -= failed

    def done(self) -> None:
        """A batch from :meth:`take_all` is applied, or back in the queue."""
        with self._lock:
            self._sending -= 1
            if not self._sending:
                self._sent.notify_all()

    @property
    def sending(self) -> bool:
        """Whether another thread is sending a batch right now."""
        return self._sending > 0

    def wait_sent(self, timeout: float = 30.0) -> None:
        """Wait until no batch is in flight (a read after this sees every settlement sent)."""
        with self._lock:
            self._sent.wait_for(lambda: not self._sending, timeout)

    def put_back(self, queued: list[Queued]) -> None:
        """Queue again what failed to go (it may have gone: sent again, it counts once)."""
        if not queued:
            return
        now = time.monotonic()
        with self._lock:
            self._failed_micro += sum(max(q.cost, 0) for q in queued if not q.failed)
            self._items[:0] = [(now, replace(q, failed=True)) for q in queued]
            _busy.add(self)
        _flusher.wake()

    def due_in(self, now: float) -> float | None:
        """Seconds until the oldest settlement is due (``None``: nothing queued)."""
        with self._lock:
            if not self._items or self._pid != os.getpid():
                return None
            return self._items[0][0] + self.within_s - now

    def __len__(self) -> int:
        return len(self._items)

    @property
    def unsent_micro(self) -> int:
        """What the settlements that failed to go at least once charge (0 while Redis answers)."""
        return self._failed_micro

    def send(self) -> None:
        """Send everything queued now, through the store (raises as the store does)."""
        if self._flush is not None:
            self._flush()

    @property
    def others_waiting(self) -> bool:
        """Whether another queue of this process holds settlements."""
        return any(queue is not self for queue in list(_busy))

    def send_others(self) -> None:
        """Send the other queues of this process (a read through one store sees what another
        store here settled); one that fails keeps its settlements, and its failure is its own."""
        for queue in list(_busy):
            if queue is self:
                continue
            try:
                queue.send()
            except Exception as exc:
                logger.debug("Nebo budget settlements of another store kept: %s", type(exc).__name__)


_queues: weakref.WeakSet[SettleQueue] = weakref.WeakSet()
"""Every queue of this process (a forked child empties them)."""
_busy: set[SettleQueue] = set()
"""The queues with settlements in them: held (with their stores) until those are sent."""


class _Flusher:
    """One daemon thread per process that sends settlements no reservation took in time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._hooks_pid: int | None = None
        self._idle = False

    def wake(self) -> None:
        """A queue got its first settlement: start the thread, or wake it if it sleeps idle (a
        thread waiting for a deadline needs no wake: it looks again when it comes)."""
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="nebo-settle", daemon=True)
                self._thread.start()
                self._install_exit_hooks()
            elif self._idle:
                self._cond.notify()

    def _install_exit_hooks(self) -> None:
        if self._hooks_pid == os.getpid():
            return
        self._hooks_pid = os.getpid()
        atexit.register(send_all)
        try:  # forked multiprocessing workers leave by os._exit, after multiprocessing's finalizers
            import multiprocessing.util

            multiprocessing.util.Finalize(None, send_all, exitpriority=10)
        except ImportError:  # pragma: no cover - multiprocessing is in the standard library
            pass

    def _run(self) -> None:
        retry_at = backoff = 0.0
        while True:
            with self._cond:  # looked at under the lock a first settlement's wake() takes
                now = time.monotonic()
                waits = [w for w in (q.due_in(now) for q in list(_busy)) if w is not None]
                self._idle = not waits
                if not waits or min(waits) > 0 or retry_at > now:
                    self._cond.wait(timeout=5.0 if not waits else max(min(waits), retry_at - now))
                    continue
            failed = self._send_due(now)
            backoff = min(max(backoff * 2, 0.05), 1.0) if failed else 0.0
            retry_at = time.monotonic() + backoff if failed else 0.0

    @staticmethod
    def _send_due(now: float) -> bool:
        """Send every queue whose oldest settlement is due; whether one failed (it keeps them)."""
        failed = False
        for queue in list(_busy):
            due = queue.due_in(now)
            if due is None or due > 0:
                continue
            try:
                queue.send()
            except Exception as exc:  # kept queued; tried again after a pause
                failed = True
                logger.debug("Nebo budget settlements not sent yet: %s", type(exc).__name__)
        return failed


_flusher = _Flusher()


def send_all() -> None:
    """Send every queued settlement of this process now (at exit; tests)."""
    for queue in list(_busy):
        if not len(queue):
            continue
        try:
            queue.send()
        except Exception as exc:
            logger.warning(
                "Nebo budget: %d settlement(s) could not reach Redis (%s); their reservations are "
                "charged when their time-to-live passes",
                len(queue),
                type(exc).__name__,
            )


def _after_fork_in_child() -> None:
    for queue in list(_queues):
        with queue._lock:
            queue._items, queue._pid, queue._failed_micro = [], os.getpid(), 0
    _busy.clear()
    _flusher._thread = None
    _flusher._cond = threading.Condition()


os.register_at_fork(after_in_child=_after_fork_in_child)

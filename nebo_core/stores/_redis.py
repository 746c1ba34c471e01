"""A budget store in Redis, for many processes sharing one Nebo token.

Every update is one Lua script, so it is atomic on the server: a reservation is checked
against the cap and taken in one step, a settlement swaps the reservation for the real
cost in one step, and a snapshot replaces the stored one only if it was observed later.
Reservation expiry uses the Redis server's clock (``TIME``), so workers with skewed
clocks agree, and a worker that dies mid-call leaks nothing once its reservations' TTL
passes. Needs the ``redis`` extra (``pip install 'nebo-integrations[redis]'``).
"""

from __future__ import annotations

import uuid
from typing import Any

from nebo_core.budget import BudgetSnapshot
from nebo_core.errors import NeboConfigurationError
from nebo_core.stores._base import BudgetStore, Reservation, ReserveResult, decode_snapshot, encode_snapshot

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "
_PURGE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('HDEL', KEYS[3], unpack(gone))
end
local reserved = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do reserved = reserved + tonumber(v) end
"""
# KEYS: spent hash, held zset, amounts hash. ARGV: scope, id, amount, cap (-1 = none), ttl.
_RESERVE = (
    _NOW
    + _PURGE
    + """
local spent = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap >= 0 and spent + reserved + amount > cap then return {0, spent, reserved} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], amount)
return {1, spent, reserved}
"""
)
# KEYS: spent hash, held zset, amounts hash, stats hash. ARGV: scope, id, cost, model, observed.
_COMMIT = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[4], ARGV[4] .. '|sum', ARGV[3])
  redis.call('HINCRBY', KEYS[4], ARGV[4] .. '|n', 1)
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
"""
_RELEASE = "redis.call('ZREM', KEYS[1], ARGV[1]) redis.call('HDEL', KEYS[2], ARGV[1]) return 1"
_RESERVED = _NOW + _PURGE + "return reserved"
# KEYS: snapshot hash. ARGV: observed_at (epoch seconds), json.
_PUBLISH = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'json', ARGV[2])
return 1
"""


class RedisBudgetStore(BudgetStore):
    """Spend, reservations, cost statistics and the freshest snapshot in Redis, under ``namespace``."""

    def __init__(self, client: Any, *, namespace: str = "nebo-budget") -> None:
        if not namespace or any(c in namespace for c in " \n{}"):
            raise NeboConfigurationError(
                f"invalid Redis namespace {namespace!r}: use a short name without spaces or braces"
            )
        self._redis = client
        self.namespace = namespace
        self._reserve = client.register_script(_RESERVE)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._reserved = client.register_script(_RESERVED)
        self._publish = client.register_script(_PUBLISH)

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "nebo-budget", **redis_kwargs: Any) -> RedisBudgetStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``; credentials may be in the URL)."""
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
            raise NeboConfigurationError(
                "RedisBudgetStore needs the redis package: pip install 'nebo-integrations[redis]'"
            ) from exc
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise NeboConfigurationError(
                "the Redis URL must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)"
            )
        return cls(redis.Redis.from_url(url, **redis_kwargs), namespace=namespace)

    def __repr__(self) -> str:
        # Never show the connection (its URL may carry a password).
        return f"RedisBudgetStore(namespace={self.namespace!r})"

    def _keys(self, scope: str) -> list[str]:
        ns = self.namespace
        return [f"{ns}:spent", f"{ns}:held:{scope}", f"{ns}:amt:{scope}"]

    def reserve(
        self, scope: str, model: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> ReserveResult:
        rid = uuid.uuid4().hex
        cap = -1 if cap_micro is None else cap_micro
        ok, spent, reserved = self._reserve(
            keys=self._keys(scope), args=[scope, rid, amount_micro, cap, ttl_s]
        )
        reservation = Reservation(rid, scope, amount_micro, model) if int(ok) else None
        return ReserveResult(reservation, int(spent), int(reserved))

    def commit(self, reservation: Reservation, cost_micro: int, observed: bool) -> int:
        keys = [*self._keys(reservation.scope), f"{self.namespace}:stats"]
        args = [reservation.scope, reservation.id, cost_micro, reservation.model, int(observed)]
        return int(self._commit(keys=keys, args=args))

    def release(self, reservation: Reservation) -> None:
        self._release(keys=self._keys(reservation.scope)[1:], args=[reservation.id])

    def spent(self, scope: str) -> int:
        return int(self._redis.hget(f"{self.namespace}:spent", scope) or 0)

    def reserved(self, scope: str) -> int:
        return int(self._reserved(keys=self._keys(scope)))

    def mean_cost(self, model: str) -> float | None:
        total, count = self._redis.hmget(f"{self.namespace}:stats", f"{model}|sum", f"{model}|n")
        return int(total) / int(count) if count and int(count) else None

    def publish(self, snapshot: BudgetSnapshot) -> None:
        self._publish(
            keys=[self._snapshot_key(snapshot.account)],
            args=[f"{snapshot.observed_at.timestamp():.6f}", encode_snapshot(snapshot)],
        )

    def _snapshot_key(self, account: str | None) -> str:
        return f"{self.namespace}:snapshot:{account or '-'}"

    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        raw = self._redis.hget(self._snapshot_key(account), "json")
        return decode_snapshot(raw) if raw else None

    def reset(self) -> None:
        keys = list(self._redis.scan_iter(match=f"{self.namespace}:*"))
        if keys:
            self._redis.delete(*keys)

    def close(self) -> None:
        """Close the Redis connections."""
        self._redis.close()

"""Counters in Redis, shared by every replica: each operation is one Lua script, so it is atomic.

Per slot key `K` the store keeps a hash `{prefix}:c:K` (fields `used`, `held` and `h:<hold id>` = amount
held by that lease) and a sorted set `{prefix}:l:K` of lease ids scored by their deadline. A reservation
first releases the expired leases of its slots, then checks every slot and only if all admit holds the
amount on each: all levels or none, and no other client can interleave. Slot keys carry the window, so a
reservation made in one window is settled in that window even after a rollover.

Times come from the caller's (injected) clock; TTLs are relative, so Redis's own clock only runs expiry.
All keys share the hash tag `{prefix}`, so a script's keys live on one Redis Cluster shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.governance.counters import ReserveResult, Slot, SlotValue
from hub.governance.errors import CountersUnavailable

__all__ = ["RedisCounters"]

_RELEASE_EXPIRED = """
local function release_expired(h, z, now)
  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #ids == 0 then return end
  local back = 0
  for _, id in ipairs(ids) do
    back = back + (tonumber(redis.call('HGET', h, 'h:' .. id)) or 0)
    redis.call('HDEL', h, 'h:' .. id)
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  redis.call('HINCRBY', h, 'held', -back)
end
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""

# KEYS: hash, leases per slot. ARGV: now_ms, lease_until_ms, hold_id, then limit, amount, ttl_ms per slot.
# Returns {refused (1-based, 0 = granted), used_1, held_1, used_2, held_2, ...}.
_RESERVE = (
    _RELEASE_EXPIRED
    + """
local now, lease_until, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n = #KEYS / 2
local out = {0}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  release_expired(h, z, now)
  local vals = redis.call('HMGET', h, 'used', 'held')
  out[2 * i] = tonumber(vals[1]) or 0
  out[2 * i + 1] = tonumber(vals[2]) or 0
end
for i = 1, n do
  local limit, amount = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
  local total = out[2 * i] + out[2 * i + 1]
  if total >= limit or total + amount > limit then
    out[1] = i
    return out
  end
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local amount, ttl = tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i])
  if amount > 0 then
    redis.call('HINCRBY', h, 'held', amount)
    redis.call('HSET', h, 'h:' .. hold, amount)
    redis.call('ZADD', z, lease_until, hold)
    out[2 * i + 1] = out[2 * i + 1] + amount
    keep(z, ttl)
  else
    redis.call('HINCRBY', h, 'held', 0)
  end
  keep(h, ttl)
end
return out
"""
)

# KEYS: hash, leases per slot. ARGV: hold_id, then actual, ttl_ms per slot.
_SETTLE = (
    _RELEASE_EXPIRED
    + """
local hold = ARGV[1]
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local actual, ttl = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local held = tonumber(redis.call('HGET', h, 'h:' .. hold))
  if held then
    redis.call('HDEL', h, 'h:' .. hold)
    redis.call('ZREM', z, hold)
    redis.call('HINCRBY', h, 'held', -held)
  end
  redis.call('HINCRBY', h, 'used', actual)
  keep(h, ttl)
end
return {}
"""
)

# KEYS: hash, leases per slot. ARGV: now_ms, reset (1 = zero `used`). Returns {used_1, held_1, ...}.
_READ = (
    _RELEASE_EXPIRED
    + """
local now, reset = tonumber(ARGV[1]), ARGV[2] == '1'
local out = {}
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  release_expired(h, z, now)
  if reset and redis.call('EXISTS', h) == 1 then redis.call('HSET', h, 'used', 0) end
  local vals = redis.call('HMGET', h, 'used', 'held')
  out[2 * i - 1] = tonumber(vals[1]) or 0
  out[2 * i] = tonumber(vals[2]) or 0
end
return out
"""
)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _ttl_ms(seconds: float) -> int:
    return max(1000, round(seconds * 1000))


class RedisCounters:
    """`Counters` over Redis; share one instance per process (it owns a connection pool).

    Args:
        client: a `redis.asyncio.Redis` client (see `from_url`).
        prefix: namespace of every key, also the Redis Cluster hash tag.
    """

    awaits_io: ClassVar[bool] = True

    def __init__(self, client: aioredis.Redis, *, prefix: str = "agenthub") -> None:
        self._client = client
        self._prefix = "{" + prefix + "}"
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._read = client.register_script(_READ)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "agenthub", timeout: float = 2.0, max_connections: int = 32
    ) -> RedisCounters:
        """Connect lazily to `redis://host:port/db`; failures surface per call as `CountersUnavailable`.

        The pool is blocking: a burst of calls waits (up to `timeout`) for one of `max_connections`.
        """
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )  # fmt: skip
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix)

    def _keys(self, keys: Sequence[str]) -> list[str]:
        out: list[str] = []
        for key in keys:
            out += (f"{self._prefix}:c:{key}", f"{self._prefix}:l:{key}")
        return out

    async def _run(self, script: Any, keys: list[str], args: list[str | int]) -> list[int]:
        try:
            return [int(v) for v in await script(keys=keys, args=args)]
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(f"redis counters failed: {exc}") from exc

    async def reserve(self, slots: Sequence[Slot], *, hold_id: str, now: float, lease: float) -> ReserveResult:
        """See `Counters.reserve`."""
        args: list[str | int] = [_ms(now), _ms(now + lease), hold_id]
        for slot in slots:
            args += (slot.limit, slot.amount, _ttl_ms(slot.ttl))
        out = await self._run(self._reserve, self._keys([s.key for s in slots]), args)
        values = tuple(SlotValue(out[i], out[i + 1]) for i in range(1, len(out), 2))
        return ReserveResult(out[0] - 1, values)

    async def settle(self, slots: Sequence[Slot], *, hold_id: str, now: float) -> None:
        """See `Counters.settle`."""
        args: list[str | int] = [hold_id]
        for slot in slots:
            args += (slot.amount, _ttl_ms(slot.ttl))
        await self._run(self._settle, self._keys([s.key for s in slots]), args)

    async def read(self, keys: Sequence[str], *, now: float) -> list[SlotValue]:
        """See `Counters.read`."""
        out = await self._run(self._read, self._keys(keys), [_ms(now), 0])
        return [SlotValue(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    async def reset(self, keys: Sequence[str], *, now: float) -> None:
        """See `Counters.reset`."""
        await self._run(self._read, self._keys(keys), [_ms(now), 1])

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

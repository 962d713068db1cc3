"""The shared sessions' bus on Redis (`hub.doors.mcp_relay.SessionBus`): the replicas of a PostgreSQL + Redis
deployment relay on one pub/sub channel and record ended sessions as keys that expire with their ids. Imported only
with Redis configured: a hub without it never loads the client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hub.doors.mcp_relay import SessionsUnavailable

__all__ = ["CHANNEL", "CONNECT_TIMEOUT_S", "GONE_PREFIX", "RedisBus"]

CHANNEL = "agenthub:mcp:relay"
"""The pub/sub channel every replica listens on."""
GONE_PREFIX = "agenthub:mcp:gone:"
"""`GONE_PREFIX + digest(session id)`: the session was deleted (expires with the id)."""
CONNECT_TIMEOUT_S = 5.0
"""How long a connection to Redis may take to open (a refused one fails at once)."""


class RedisBus:
    """`SessionBus` on one Redis client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @classmethod
    def from_url(cls, url: str) -> RedisBus:
        # a Redis that does not answer a connection must not hold up the first MCP request for long
        return cls(aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S))

    async def listen(self, subscribed: Callable[[], None], deliver: Callable[[bytes], Awaitable[None]]) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            async for message in pubsub.listen():
                if message.get("type") == "subscribe":
                    subscribed()
                elif message.get("type") == "message":
                    await deliver(message.get("data"))
        except (RedisError, OSError) as exc:
            raise SessionsUnavailable(f"Redis: {exc}") from None
        finally:
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()

    async def publish(self, payload: bytes) -> None:
        try:
            await self._redis.publish(CHANNEL, payload)
        except (RedisError, OSError) as exc:
            raise SessionsUnavailable(f"Redis: {exc}") from None

    async def ended(self, name: str) -> bool:
        try:
            return bool(await self._redis.exists(GONE_PREFIX + name))
        except (RedisError, OSError) as exc:
            raise SessionsUnavailable(f"Redis: {exc}") from None

    async def end(self, name: str, ttl_ms: int) -> None:
        try:
            await self._redis.set(GONE_PREFIX + name, b"1", px=ttl_ms)
        except (RedisError, OSError) as exc:
            raise SessionsUnavailable(f"Redis: {exc}") from None

    async def aclose(self) -> None:
        await self._redis.aclose()

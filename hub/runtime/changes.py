"""Follow admin changes made by other processes: the change log's poll, and Redis's notification when there is one.

Every hub process (each replica, each worker of `agenthub serve --workers N`) keeps what it serves from in memory
and applies its own admin changes at once. A change made by another process appends a row to the change log
(`hub.store.changes`); `ChangeWatcher` looks for rows it has not seen every `[hub] change_poll_s` seconds (one
indexed range read, in a background task: the request path never waits for it), and when Redis is configured it
also listens on a channel that every committing process publishes to, so replicas react at once and the poll is
only the safety net. For the rows found it calls the followers of exactly those kinds, with the meta versions read
once; rows this process made are skipped, as it applied them already.

Ids come from the database's sequence, and on PostgreSQL two transactions may commit out of id order: a row whose
id is below the newest seen can still appear. So the ids skipped over stay awaited for `GAP_WAIT_S` (a transaction
that rolled back never fills its id) and each poll reads from the oldest awaited one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from sqlalchemy.engine import Engine

from hub.store.changes import announcers, changes_after, newest_change, origin, prune_changes
from hub.store.sql import read_all_meta

logger = logging.getLogger(__name__)

Follower = Callable[[Mapping[str, str]], Awaitable[None]]
"""A part of the hub that follows changes made by other processes, given the meta values read just now."""

CHANNEL = "agenthub:changes"
"""The Redis channel a process publishes its origin to after committing a change."""

GAP_WAIT_S = 60.0
"""How long an id skipped over is awaited (a transaction may commit after one with a higher id)."""

MAX_GAPS = 1000
"""The most ids one jump leaves awaited (a sequence that skipped further did not hand them out; the resync covers
anything older)."""

RESYNC_S = 60.0
"""How often a process also hands every follower the meta versions (a no-op for a follower that is current)."""

PRUNE_EVERY_S = 3600.0
"""How often a process deletes change rows past their retention."""

_RETRY_S = 1.0


class ChangeWatcher:
    """Polls the change log (and listens to Redis) and hands each kind of change to its followers."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.redis_url = redis_url
        self.origin = origin(engine)
        self._clock = clock
        self._followers: list[tuple[frozenset[str], Follower]] = []
        self._seen = 0
        self._gaps: dict[int, float] = {}
        """Ids below `_seen` not read yet, with the time they stop being awaited."""
        self._wake = anyio.Event()
        self._pruned_at: float | None = None
        self._synced_at = clock()
        self.polls = 0
        """How many polls ran (for tests and the docs' figures)."""

    def follow(self, kinds: Iterable[str], follower: Follower) -> None:
        """Call `follower` after a change of any of `kinds` made by another process."""
        self._followers.append((frozenset(kinds), follower))

    def wake(self) -> None:
        """Poll now instead of at the end of the interval (a notification arrived)."""
        self._wake.set()

    # -- running -----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Catch up once (a change may have landed while the hub loaded its state), then follow until cancelled."""
        self._seen = await anyio.to_thread.run_sync(newest_change, self.engine)
        await self._call(None)
        publisher = self._publisher()
        if publisher is not None:
            announcers.append(publisher)
        try:
            task_status.started()
            async with anyio.create_task_group() as tg:
                if self.redis_url is not None:
                    tg.start_soon(self._listen, self.redis_url)
                wait = self.interval
                while True:
                    with anyio.move_on_after(wait):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                    try:
                        await self.tick()
                    except Exception:
                        logger.exception("following admin changes failed")
                        wait = min(self.interval, _RETRY_S)  # the rows not read yet are read at the next poll
                    else:
                        wait = self.interval
        finally:
            if publisher is not None:
                announcers.remove(publisher)
                publisher.close()

    async def tick(self) -> None:
        """One turn of the loop: poll, then the occasional resync and pruning."""
        await self.poll()
        await self._resync()
        await self._prune()

    async def poll(self) -> frozenset[str]:
        """Read the changes not seen yet and call the followers of their kinds; returns those kinds."""
        self.polls += 1
        now = self._clock()
        self._gaps = {i: until for i, until in self._gaps.items() if until > now}
        low = min(self._gaps, default=self._seen + 1) - 1
        rows = await anyio.to_thread.run_sync(changes_after, self.engine, min(low, self._seen))
        kinds: set[str] = set()
        for change_id, kind, made_by in rows:
            if change_id <= self._seen and change_id not in self._gaps:
                continue  # read before
            self._gaps.pop(change_id, None)
            if change_id > self._seen:
                for missing in range(max(self._seen + 1, change_id - MAX_GAPS), change_id):
                    self._gaps[missing] = now + GAP_WAIT_S
                self._seen = change_id
            if made_by != self.origin:
                kinds.add(kind)
        if kinds:
            await self._call(frozenset(kinds))
        return frozenset(kinds)

    async def _call(self, kinds: frozenset[str] | None) -> None:
        """Call the followers of `kinds` (every follower with None) with the meta versions read once."""
        chosen = [f for wanted, f in self._followers if kinds is None or wanted & kinds]
        if not chosen:
            return
        versions = await anyio.to_thread.run_sync(read_all_meta, self.engine)
        for follower in chosen:
            try:
                await follower(versions)
            except Exception:
                logger.exception("a follower of admin changes failed")

    async def _resync(self) -> None:
        """Now and then hand every follower the meta versions: a follower compares them with what it applied, so one
        that failed on a change (and logged it) catches up, and a change older than the awaited ids is not lost."""
        now = self._clock()
        if now - self._synced_at < RESYNC_S:
            return
        self._synced_at = now
        await self._call(None)

    async def _prune(self) -> None:
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        await anyio.to_thread.run_sync(prune_changes, self.engine)

    # -- Redis -------------------------------------------------------------------------------------------------

    def _publisher(self) -> _Publisher | None:
        """What publishes this process's origin after it commits a change (in the committing thread)."""
        return None if self.redis_url is None else _Publisher(self.redis_url, self.origin)

    async def _listen(self, url: str) -> None:
        """Wake the poll whenever another process announces a change; reconnect after a Redis failure."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        own = self.origin.encode()
        while True:
            client: Any = aioredis.Redis.from_url(url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.wake()  # whatever was announced while not subscribed
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and message.get("data") != own:
                            self.wake()
            except (RedisError, OSError):
                logger.warning("listening for admin changes on Redis failed; polling meanwhile", exc_info=True)
            finally:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
            await anyio.sleep(_RETRY_S)


class _Publisher:
    """Announces this process's committed changes on Redis (a blocking publish, in the thread that committed)."""

    def __init__(self, url: str, message: str) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._message = message

    def __call__(self, made_by: str, _kinds: frozenset[str]) -> None:
        if made_by == self._message:  # another hub of this process announces its own
            self._client.publish(CHANNEL, self._message)

    def close(self) -> None:
        self._client.close()

"""Budgets survive a restart: a fresh counter store is seeded once with the spend the request log holds.

Counters in memory (the embedded default) or in the supervisor's counter server start empty, so without this a
key that spent $4.99 of a $5 monthly budget could spend $5 more after a restart. When the hub opens its counters,
the budget counter of every registered key, team and customer is given the cost the request log records for the
budget's current window (from the window's start to now).

**Exactly once per counter store.** A store that already holds the usage (Redis that kept its data, the counter
server when one of its workers restarts, a store another worker seeded first) must not be seeded again, or the
spend would count twice. The store itself arbitrates, through the `Counters` protocol and nothing more: a marker
slot (`MARKER`, limit 1) is reserved with a lease; only one process is granted it. That process reads the spend,
then settles its budget counters *and* the marker in one settle (atomic in every store), so the marker reads
`used = 1` exactly when the usage is in. Everyone else sees the marker taken: `used = 1`, nothing to do; only
`held`, another process is seeding: wait and look again. A seeder that fails gives the marker back (a refund), and
one that dies mid-way leaves a lease that expires, so another process takes over. A seeder that took longer than
half its lease stops before writing, so a takeover never races a late writer. Past `CHUNK` budgets the settles are
split, each with a marker of its own part, so a takeover skips the parts already written.

Until the usage is in, the limiter refuses calls that spend against a budget (`Limiter.budgets_loaded`) rather
than count them from zero; rate limits and unbudgeted keys are served. See docs/governance.md.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import anyio
import anyio.abc

from hub.governance.counters import Slot
from hub.governance.limits import BudgetLine, Limiter
from hub.governance.usage import EntityKind, usd_to_micros

__all__ = ["CHUNK", "MARKER", "BudgetSeeder", "SpendQuery", "SpendReader"]

logger = logging.getLogger(__name__)

MARKER = "seed/budgets"
"""The marker slot's counter key (limiter keys start with an entity kind, so it cannot collide)."""

MARKER_TTL = 10 * 365 * 86400.0
"""Seconds the marker is kept: as long as the store itself, for all practical purposes."""

CHUNK = 1000
"""The most budget counters one settle carries (the counter server's frames are bounded)."""

_GRACE = 3600.0
"""Seconds a seeded counter is kept past its window's end (as the limiter's own lease)."""


class SpendQuery(NamedTuple):
    """What one entity spent since `start`: the request-log rows whose `column` is `value`."""

    column: Literal["key_id", "team", "customer"]
    value: str
    start: float
    """Unix seconds (the budget window's start)."""
    unattributed: bool = False
    """Only rows without a customer of their own (a team's keys that inherit the team's customer)."""


SpendReader = Callable[[Sequence[SpendQuery], float], Sequence[float]]
"""US dollars spent per query, up to `now` (Unix seconds); blocking (it runs in a worker thread)."""


class _Late(Exception):
    """Seeding took more than half the marker's lease; another process may take over, so this one stops."""


class BudgetSeeder:
    """Seeds a limiter's budget counters from the request log, once per counter store.

    Args:
        limiter: the limiter whose registered budgets are seeded (and refused until they are).
        read_spend: the request-log reader (`hub.audit.spend.window_spend` bound to the database).
        clock: Unix seconds, the limiter's clock (injected in tests).
        lease: seconds the marker is held by a seeder before another may take over.
        poll: seconds between looks at a marker another process holds.
        wait: seconds `run` waits for another process's seeding before reporting started (budgets still refused).
        retry: seconds between attempts after a failure (the database is down).
    """

    def __init__(
        self,
        limiter: Limiter,
        read_spend: SpendReader,
        *,
        clock: Callable[[], float] = time.time,
        lease: float = 60.0,
        poll: float = 0.05,
        wait: float = 10.0,
        retry: float = 5.0,
    ) -> None:
        self._limiter = limiter
        self._read = read_spend
        self._clock = clock
        self._lease = lease
        self._poll = poll
        self._wait = wait
        self._retry = retry
        self.seeded = 0
        """Budget counters this process seeded (0 when another process, or an earlier run, did)."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Refuse budgeted spending until the store holds the usage, then allow it; returns once it does.

        Reports started (for `TaskGroup.start`) as soon as the usage is in, or after the first failure, or after
        `wait` seconds of another process seeding: the hub then serves, refusing only calls that spend against a
        budget, while this goes on trying in the background.
        """
        limiter = self._limiter
        limiter.budgets_loaded = False
        started = False
        waited = 0.0
        while True:
            failed = False
            try:
                done = await self.seed()
            except Exception:
                logger.exception("loading budget usage from the request log failed; retrying in %gs", self._retry)
                done, failed = False, True
            if done:
                limiter.budgets_loaded = True
                if not started:
                    task_status.started()
                return
            if not started and (failed or waited >= self._wait):
                if not failed:
                    logger.warning("another process is still loading budget usage; budgeted calls wait for it")
                task_status.started()
                started = True
            pause = self._retry if failed else self._poll
            waited += pause
            await anyio.sleep(pause)

    async def seed(self) -> bool:
        """One attempt: True once the store holds the usage (seeded here now, or before by anyone), False while
        another process holds the marker.

        Raises:
            CountersUnavailable: the counter store failed.
            Exception: the request log could not be read (the marker is given back first).
        """
        counters = self._limiter.counters
        now = self._clock()
        hold = f"seed:{secrets.token_hex(8)}"
        marker = Slot(MARKER, 1, 1, MARKER_TTL)
        claim = await counters.reserve([marker], hold_id=hold, now=now, lease=self._lease)
        if not claim.granted:
            return claim.values[0].used >= 1
        try:
            slots = await self._slots(now)
            await self._write(slots, hold, marker, since=now)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await counters.settle([marker._replace(amount=0)], hold_id=hold, now=self._clock())
            raise
        (value,) = await counters.read([MARKER], now=self._clock())  # answered after the settles (counter server)
        if value.used < 1:
            raise RuntimeError("the budget marker was not recorded")
        self.seeded = len(slots)
        logger.info("budget usage loaded from the request log: %d counters", len(slots))
        return True

    async def _slots(self, now: float) -> list[Slot]:
        """The budget counters to seed (those with some spend), sorted by key."""
        limiter = self._limiter
        lines = limiter.budget_lines(now)
        queries: list[SpendQuery] = []
        spans: list[tuple[BudgetLine, int, int]] = []
        for line in lines:
            first = len(queries)
            start, name = line.window.start, line.entity.name
            kind = line.entity.kind
            if kind is EntityKind.KEY:
                queries.append(SpendQuery("key_id", name, start))
            elif kind is EntityKind.TEAM:
                queries.append(SpendQuery("team", name, start))
            else:
                queries.append(SpendQuery("customer", name, start))
                queries += [SpendQuery("team", team, start, unattributed=True) for team in limiter.teams_of(name)]
            spans.append((line, first, len(queries)))
        spent = await anyio.to_thread.run_sync(self._read, queries, now) if queries else []
        slots: list[Slot] = []
        for line, first, end in spans:
            micros = usd_to_micros(sum(spent[first:end]))
            if micros > 0:
                slots.append(Slot(line.key, line.limit, micros, line.window.end - now + _GRACE))
        slots.sort()
        return slots

    async def _write(self, slots: list[Slot], hold: str, marker: Slot, *, since: float) -> None:
        """Settle the seeded counters and the marker: in one settle, or in parts each with its own marker."""
        counters = self._limiter.counters
        if len(slots) <= CHUNK:
            self._in_time(since)
            await counters.settle([*slots, marker], hold_id=hold, now=self._clock())
            return
        for index in range(0, len(slots), CHUNK):
            part = Slot(f"{MARKER}/{index // CHUNK}", 1, 1, MARKER_TTL)
            (value,) = await counters.read([part.key], now=self._clock())
            if value.used >= 1:  # written by a seeder that died before finishing
                continue
            self._in_time(since)
            await counters.settle([*slots[index : index + CHUNK], part], hold_id=hold, now=self._clock())
        self._in_time(since)
        await counters.settle([marker], hold_id=hold, now=self._clock())

    def _in_time(self, since: float) -> None:
        if self._clock() - since > self._lease / 2:
            raise _Late(f"loading budget usage took more than {self._lease / 2:g}s; another process may take over")

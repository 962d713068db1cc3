"""The limits engine: rate limits and budgets on every level (key, team, customer), reserved atomically.

A call reserves its estimate on every applicable counter at once (all levels or none), runs, then settles
with its actual usage or is refunded. The `limits` stage is three lines around `call_next`:

```python
reservation = await limiter.reserve(key_id, Usage(requests=1, tokens=estimate, usd=price))
try:
    outcome = await call_next(call)
except BaseException:
    await limiter.refund(reservation)
    raise
await limiter.settle(reservation, Usage(requests=1, tokens=used, usd=cost))
```

Units: requests and tokens are integers; US dollars are counted in whole micro-dollars, so sums are exact in
memory and in Redis alike.
"""

from __future__ import annotations

import functools
import itertools
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from hub.governance.config import BudgetConfig, GovernanceConfig, RateLimitConfig
from hub.governance.counters import Counters, ReserveResult, Slot, SlotValue
from hub.governance.errors import BudgetDenied, CountersUnavailable, RateLimitDenied, UnknownSubject
from hub.governance.periods import Window, WindowSchedule
from hub.governance.usage import (
    METRICS,
    MICROS,
    EntityKind,
    EntityRef,
    LimitStatus,
    Metric,
    Reservation,
    Usage,
    UsageSnapshot,
    format_reset,
    rate_headers,
    usd_to_micros,
)

__all__ = ["BudgetLine", "Limiter"]


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One US-dollar budget of one entity in the window holding some instant (what a restart must seed)."""

    entity: EntityRef
    key: str
    """The counter key of the budget in that window."""
    limit: int
    """Micro-dollars."""
    window: Window


class _Line:
    """One limit of one entity: a metric, a limit and the windows it counts in."""

    __slots__ = (
        "_key",
        "_window",
        "entity",
        "header_names",
        "index",
        "limit",
        "limit_text",
        "metric",
        "scale",
        "schedule",
    )

    def __init__(self, entity: EntityRef, metric: Metric, limit: int, schedule: WindowSchedule) -> None:
        self.entity = entity
        self.metric = metric
        self.index = METRICS.index(metric)
        self.limit = limit
        self.scale = MICROS if metric is Metric.USD else 1
        """Counter units per reported unit (micro-dollars per dollar; 1 for requests and tokens)."""
        self.schedule = schedule
        self.header_names = (
            f"x-ratelimit-limit-{metric}",
            f"x-ratelimit-remaining-{metric}",
            f"x-ratelimit-reset-{metric}",
        )
        """The names of this line's `x-ratelimit-*` headers (a requests or tokens line)."""
        self.limit_text = str(int(limit / self.scale))
        """Its `x-ratelimit-limit-*` value."""
        self._window = Window(0.0, 0.0)
        self._key = ""

    def key(self, window: Window) -> str:
        """The counter key of this line in `window` (entity name last, so any name is unambiguous)."""
        if window is not self._window:
            self._window = window
            self._key = f"{self.entity.kind}/{self.metric}/{self.schedule.period}/{window.id}/{self.entity.name}"
        return self._key


def _compile(entity: EntityRef, budget: BudgetConfig | None, rate: RateLimitConfig | None) -> tuple[_Line, ...]:
    lines: list[_Line] = []
    if rate is not None:
        if rate.requests is not None:
            lines.append(_Line(entity, Metric.REQUESTS, rate.requests, WindowSchedule(rate.period)))
        if rate.tokens is not None:
            lines.append(_Line(entity, Metric.TOKENS, rate.tokens, WindowSchedule(rate.period)))
    if budget is not None:
        schedule = WindowSchedule(budget.reset, calendar_aligned=budget.calendar_aligned, anchor=budget.anchor)
        lines.append(_Line(entity, Metric.USD, usd_to_micros(budget.max_usd), schedule))
    return tuple(lines)


class _Plan:
    """The lines that apply to one key (its own, its team's, its customer's) and their current windows.

    The windows, counter keys and window ends are worked out once per window change: between two boundaries a
    reservation only reads them.
    """

    __slots__ = ("_from", "_until", "budgeted", "ends", "heading", "indexes", "lines", "rates", "specs", "windows")

    def __init__(self, lines: tuple[_Line, ...], *, spending: bool = True) -> None:
        self.lines = lines
        self.budgeted = any(line.metric is Metric.USD for line in lines)
        """Whether a US-dollar budget applies on some level."""
        self.rates: _Plan = (
            _Plan(tuple(line for line in lines if line.metric is not Metric.USD), spending=False) if spending else self
        )
        """The same key's rate limits without its budgets (for calls that cost nothing)."""
        self.indexes = tuple(line.index for line in lines)
        metrics = [line.index for line in lines]
        self.heading: tuple[int, ...] | None = (
            tuple(sorted(range(len(lines)), key=metrics.__getitem__)) if len(set(metrics)) == len(metrics) else None
        )
        """With at most one line per metric (each line then binds its metric), the lines' positions in the order
        their headers are written (`rate_headers`: requests, tokens, US dollars); None with more (the binding one
        is found by `_statuses`)."""
        self.windows: tuple[Window, ...] = ()
        self.ends: tuple[float, ...] = ()
        self.specs: tuple[tuple[str, int, int, float], ...] = ()
        """Per line: counter key, limit, metric index and window end."""
        self._from = math.inf
        self._until = -math.inf

    def at(self, now: float) -> None:
        """Make `windows`, `ends` and `specs` those of the windows holding `now`."""
        if self._from <= now < self._until:
            return
        windows = tuple(line.schedule.window(now) for line in self.lines)
        self.windows = windows
        self.ends = tuple(window.end for window in windows)
        self.specs = tuple(
            (line.key(window), line.limit, line.index, window.end)
            for line, window in zip(self.lines, windows, strict=True)
        )
        self._from = max((window.start for window in windows), default=-math.inf)
        self._until = min(self.ends, default=math.inf)


@dataclass(frozen=True, slots=True)
class _KeySpec:
    team: str | None
    customer: str | None


class Limiter:
    """Rate limits and budgets for every key, team and customer, over one `Counters` store.

    Args:
        counters: `InMemoryCounters` for one process, `RedisCounters` for many replicas.
        config: customers and teams (replace later with `configure`).
        clock: Unix seconds; injected so tests control time.
        lease: seconds a reservation is held before it is presumed orphaned (a crashed replica) and released.
        release_timeout: seconds a settle or refund may take; they run shielded from cancellation, so a client
            that disconnects still gets its reservation settled or refunded.
    """

    def __init__(
        self,
        counters: Counters,
        config: GovernanceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        lease: float = 3600.0,
        release_timeout: float = 5.0,
    ) -> None:
        self.counters = counters
        self._clock = clock
        self._lease = lease
        self._release_timeout = release_timeout
        self._replica = secrets.token_hex(6)
        self._seq = itertools.count()
        self._lines: dict[EntityRef, tuple[_Line, ...]] = {}
        self._team_customer: dict[str, str | None] = {}
        self._keys: dict[str, _KeySpec] = {}
        self._plans: dict[str, _Plan | str] = {}
        self.budgets_loaded = True
        """False while the budgets' usage is still to be seeded from the request log (`hub.governance.seed`):
        calls that spend are then refused rather than counted from zero."""
        self.configure(config or GovernanceConfig())

    # -- configuration (off the hot path) -------------------------------------------------------------------

    def configure(self, config: GovernanceConfig) -> None:
        """Replace all customers and teams; keys keep their own limits and are re-linked."""
        lines = {ref: ls for ref, ls in self._lines.items() if ref.kind is EntityKind.KEY}
        for customer in config.customers:
            ref = EntityRef(EntityKind.CUSTOMER, customer.name)
            lines[ref] = _compile(ref, customer.budget, customer.rate_limit)
        for team in config.teams:
            ref = EntityRef(EntityKind.TEAM, team.name)
            lines[ref] = _compile(ref, team.budget, team.rate_limit)
        self._lines = lines
        self._team_customer = {team.name: team.customer for team in config.teams}
        self._plans = {key: self._plan(key, spec) for key, spec in self._keys.items()}

    def set_key(
        self,
        key: str,
        *,
        team: str | None = None,
        customer: str | None = None,
        budget: BudgetConfig | None = None,
        rate_limit: RateLimitConfig | None = None,
    ) -> None:
        """Register (or replace) a key's own limits and its place in the hierarchy.

        `customer` defaults to the team's customer. Unknown team or customer names make every reservation
        for the key fail with `UnknownSubject` (fail closed) until the configuration names them.
        """
        ref = EntityRef(EntityKind.KEY, key)
        self._lines[ref] = _compile(ref, budget, rate_limit)
        self._keys[key] = spec = _KeySpec(team, customer)
        self._plans[key] = self._plan(key, spec)

    def budgeted(self, key: str) -> bool:
        """Whether a US-dollar budget applies to `key` on some level (its own, its team's, its customer's). An
        unknown key, or one whose team or customer is unknown, counts as budgeted: its calls are refused anyway."""
        plan = self._plans.get(key)
        return not isinstance(plan, _Plan) or plan.budgeted

    def remove_key(self, key: str) -> None:
        """Forget a key: further reservations for it fail with `UnknownSubject`."""
        self._keys.pop(key, None)
        self._plans.pop(key, None)
        self._lines.pop(EntityRef(EntityKind.KEY, key), None)

    def _plan(self, key: str, spec: _KeySpec) -> _Plan | str:
        plan = list(self._lines[EntityRef(EntityKind.KEY, key)])
        customer = spec.customer
        if spec.team is not None:
            team = EntityRef(EntityKind.TEAM, spec.team)
            if team not in self._lines:
                return f"key {key!r} names unknown team {spec.team!r}"
            plan += self._lines[team]
            customer = customer or self._team_customer.get(spec.team)
        if customer is not None:
            ref = EntityRef(EntityKind.CUSTOMER, customer)
            if ref not in self._lines:
                return f"key {key!r} names unknown customer {customer!r}"
            plan += self._lines[ref]
        return _Plan(tuple(plan))

    # -- the hot path ----------------------------------------------------------------------------------------

    async def reserve(self, key: str, estimate: Usage = Usage(), *, spend: bool = True) -> Reservation:
        """Reserve `estimate` on every level of `key`, all or nothing; with `spend=False` (a call that costs
        nothing: a listing, a session request) only the rate limits count it and a spent budget does not refuse it.

        Raises:
            RateLimitDenied: a requests or tokens window is full (carries `retry_after` and headers).
            BudgetDenied: a budget of the current period is spent.
            UnknownSubject: the key is not registered, or its team or customer is unknown.
            CountersUnavailable: the counter store failed.
            ValueError: a negative estimate.
        """
        plan = self._plans.get(key)
        if plan is None:
            raise UnknownSubject(f"no limits registered for key {key!r}")
        if isinstance(plan, str):
            raise UnknownSubject(plan)
        if not spend:
            plan = plan.rates
        elif not self.budgets_loaded and plan.budgeted:
            raise CountersUnavailable("budget usage is not loaded yet; calls that spend are refused until it is")
        amounts = estimate.amounts()
        if not plan.lines:  # no level of this key has a limit: no counter to reserve on
            return Reservation(key, "", (), (), (), _no_statuses)
        now = self._clock()
        lease = self._lease
        plan.at(now)
        windows = plan.windows
        slots = tuple([Slot(name, limit, amounts[index], end - now + lease) for name, limit, index, end in plan.specs])
        hold_id = f"{self._replica}:{next(self._seq)}"
        result = await self.counters.reserve(slots, hold_id=hold_id, now=now, lease=lease)
        if not result.granted:
            raise self._denial(plan.lines, windows, result, now)
        ends = plan.ends
        heading = plan.heading
        return Reservation(
            key,
            hold_id,
            slots,
            plan.indexes,
            ends,
            functools.partial(_statuses, plan.lines, windows, result.values, now),
            None if heading is None else functools.partial(_headers, heading, plan.lines, ends, result.values, now),
        )

    async def settle(self, reservation: Reservation, actual: Usage) -> None:
        """Replace the reservation by the actual usage, in the windows it was made in; a second call is a no-op.

        Raises:
            CountersUnavailable: the counter store failed (the lease then expires on its own).
        """
        if reservation.done:
            return
        amounts = actual.amounts()
        reservation.done = True
        await self._release(reservation, [amounts[i] for i in reservation.metric_indexes])

    async def refund(self, reservation: Reservation) -> None:
        """Give the whole reservation back (the call failed or the client went away); idempotent."""
        if reservation.done:
            return
        reservation.done = True
        await self._release(reservation, [0] * len(reservation.slots))

    async def _release(self, reservation: Reservation, amounts: Sequence[int]) -> None:
        if not reservation.slots:  # reserved on no counter (no limit applies)
            return
        now = self._clock()
        lease = self._lease
        slots = [
            Slot(slot.key, slot.limit, amount, (end - now if end > now else 0.0) + lease)
            for slot, amount, end in zip(reservation.slots, amounts, reservation.window_ends, strict=True)
        ]
        if not self.counters.awaits_io:  # nothing to cancel: it completes without yielding
            await self.counters.settle(slots, hold_id=reservation.hold_id, now=now)
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + self._release_timeout
            await self.counters.settle(slots, hold_id=reservation.hold_id, now=now)
        if scope.cancelled_caught:
            raise CountersUnavailable("settling a reservation timed out; its lease will expire")

    def _denial(
        self, plan: tuple[_Line, ...], windows: Sequence[Window], result: ReserveResult, now: float
    ) -> RateLimitDenied | BudgetDenied:
        line = plan[result.refused]
        window = windows[result.refused]
        retry_after = max(1, math.ceil(window.end - now))
        headers = rate_headers(_statuses(plan, windows, result.values, now))
        entity = line.entity
        if line.metric is Metric.USD:
            limit_usd = line.limit / MICROS
            message = f"{entity.kind} budget of {limit_usd:g} USD per {line.schedule.period} is spent"
            return BudgetDenied(
                message, entity=entity, metric=line.metric, limit=limit_usd, retry_after=retry_after,
                resets_at=window.end, headers=headers,
            )  # fmt: skip
        headers["retry-after"] = str(retry_after)
        message = f"{entity.kind} rate limit of {line.limit} {line.metric} per {line.schedule.period} reached"
        return RateLimitDenied(
            message, entity=entity, metric=line.metric, limit=line.limit, retry_after=retry_after,
            resets_at=window.end, headers=headers,
        )  # fmt: skip

    # -- admin -----------------------------------------------------------------------------------------------

    async def usage(self, entity: EntityRef, *, at: float | None = None) -> list[UsageSnapshot]:
        """Spent, in flight, remaining and reset time of each limit of `entity` in the window holding `at`.

        Raises:
            UnknownSubject: the entity has no registered limits.
        """
        lines = self._entity_lines(entity)
        now = self._clock() if at is None else at
        windows = [line.schedule.window(now) for line in lines]
        values = await self.counters.read([ln.key(w) for ln, w in zip(lines, windows, strict=True)], now=now)
        return [_snapshot(ln, w, v) for ln, w, v in zip(lines, windows, values, strict=True)]

    async def reset_usage(self, entity: EntityRef, metric: Metric | None = None) -> None:
        """Zero the settled usage of `entity` (one metric or all) in the current window; the window stays.

        Raises:
            UnknownSubject: the entity has no registered limits.
        """
        now = self._clock()
        lines = [ln for ln in self._entity_lines(entity) if metric is None or ln.metric is metric]
        await self.counters.reset([ln.key(ln.schedule.window(now)) for ln in lines], now=now)

    def budget_lines(self, now: float) -> list[BudgetLine]:
        """Every registered US-dollar budget (keys, teams, customers) in the window holding `now`."""
        return [
            BudgetLine(line.entity, line.key(window), line.limit, window)
            for lines in self._lines.values()
            for line in lines
            if line.metric is Metric.USD
            for window in (line.schedule.window(now),)
        ]

    def teams_of(self, customer: str) -> list[str]:
        """The teams whose customer is `customer` (their keys count towards its budget)."""
        return [team for team, owner in self._team_customer.items() if owner == customer]

    def _entity_lines(self, entity: EntityRef) -> tuple[_Line, ...]:
        lines = self._lines.get(entity)
        if lines is None:
            raise UnknownSubject(f"no limits registered for {entity}")
        return lines


def _no_statuses() -> dict[Metric, LimitStatus]:
    return {}


def _statuses(
    plan: Sequence[_Line], windows: Sequence[Window], values: Sequence[SlotValue], now: float
) -> dict[Metric, LimitStatus]:
    """Per metric, the binding line (the one with the least remaining); US dollars scaled to dollars."""
    best: dict[Metric, LimitStatus] = {}
    for line, window, (used, held) in zip(plan, windows, values, strict=True):
        left = line.limit - used - held
        remaining = (left if left > 0 else 0) / line.scale
        current = best.get(line.metric)
        if current is None or remaining < current.remaining:
            best[line.metric] = LimitStatus(line.limit / line.scale, remaining, window.end - now)
    return best


def _headers(
    heading: tuple[int, ...],
    plan: Sequence[_Line],
    ends: Sequence[float],
    values: Sequence[SlotValue],
    now: float,
) -> dict[str, str]:
    """`rate_headers(_statuses(...))` for a plan with at most one line per metric, written from the lines' own
    names and limits, without the statuses in between (every request with a limit sends them)."""
    headers: dict[str, str] = {}
    for position in heading:
        line = plan[position]
        used, held = values[position]
        left = line.limit - used - held
        if left < 0:
            left = 0
        if line.scale == 1:
            limit_name, remaining_name, reset_name = line.header_names
            headers[limit_name] = line.limit_text
            headers[remaining_name] = str(left)
            headers[reset_name] = format_reset(ends[position] - now)
        else:
            headers["x-budget-remaining-usd"] = f"{left / line.scale:.6f}"
    return headers


def _snapshot(line: _Line, window: Window, value: SlotValue) -> UsageSnapshot:
    scale = MICROS if line.metric is Metric.USD else 1
    return UsageSnapshot(
        entity=str(line.entity),
        metric=str(line.metric),
        period=str(line.schedule.period),
        limit=line.limit / scale,
        used=value.used / scale,
        in_flight=value.held / scale,
        remaining=max(0, line.limit - value.total) / scale,
        window_start=window.start,
        resets_at=window.end,
    )

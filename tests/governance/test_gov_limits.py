"""The limits engine over both counter stores: admission, atomicity, settle/refund, windows, headers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import anyio
import pytest

from hub.governance.clock import ManualClock
from hub.governance.config import BudgetConfig, GovernanceConfig, RateLimitConfig
from hub.governance.counters import Counters, ReserveResult, Slot
from hub.governance.errors import BudgetDenied, RateLimitDenied, UnknownSubject
from hub.governance.limits import Limiter
from hub.governance.usage import EntityKind, EntityRef, Metric, Reservation, Usage, UsageSnapshot
from hub.store.counters import InMemoryCounters
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

KEY = EntityRef(EntityKind.KEY, "ci-bot")
TEAM = EntityRef(EntityKind.TEAM, "platform")
CUSTOMER = EntityRef(EntityKind.CUSTOMER, "acme")


def _config(**team: object) -> GovernanceConfig:
    return GovernanceConfig.model_validate(
        {
            "customers": [{"name": "acme", "budget": {"max_usd": 1000.0, "reset": "1M"}}],
            "teams": [{"name": "platform", "customer": "acme", **team}],
        }
    )


def _by_metric(snapshots: list[UsageSnapshot]) -> dict[str, UsageSnapshot]:
    return {s.metric: s for s in snapshots}


async def test_200_concurrent_calls_against_a_limit_of_50_admit_exactly_50(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, _config(), clock=clock)
    limiter.set_key("ci-bot", team="platform", rate_limit=RateLimitConfig(requests=50, period="1m"))
    admitted: list[Reservation] = []
    denied: list[RateLimitDenied] = []

    async def one() -> None:
        try:
            admitted.append(await limiter.reserve("ci-bot"))
        except RateLimitDenied as exc:
            denied.append(exc)

    with anyio.fail_after(PATIENCE):
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(one)
    assert len(admitted) == 50
    assert len(denied) == 150
    assert {d.entity for d in denied} == {KEY}
    assert all(d.metric is Metric.REQUESTS and 1 <= d.retry_after <= 60 for d in denied)
    requests = _by_metric(await limiter.usage(KEY))["requests"]
    assert (requests.used, requests.in_flight, requests.remaining) == (0, 50, 0)


async def test_a_refusal_on_a_higher_level_leaves_no_reservation_on_lower_levels(
    counters: Counters, clock: ManualClock
):
    limiter = Limiter(counters, _config(rate_limit={"requests": 2, "period": "1m"}), clock=clock)
    limiter.set_key("ci-bot", team="platform", rate_limit=RateLimitConfig(requests=10, period="1m"))
    first = await limiter.reserve("ci-bot")
    await limiter.reserve("ci-bot")
    with pytest.raises(RateLimitDenied) as denied:
        await limiter.reserve("ci-bot")
    assert denied.value.entity == TEAM
    assert denied.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert denied.value.headers["retry-after"] == str(denied.value.retry_after)
    key_requests = _by_metric(await limiter.usage(KEY))["requests"]
    assert key_requests.in_flight == 2
    await limiter.refund(first)
    assert _by_metric(await limiter.usage(TEAM))["requests"].in_flight == 1


async def test_the_customer_budget_applies_to_every_key_of_its_teams(counters: Counters, clock: ManualClock):
    customers = [{"name": "acme", "budget": {"max_usd": 1.0, "reset": "1d"}}]
    config = GovernanceConfig.model_validate(
        {"customers": customers, "teams": [{"name": "platform", "customer": "acme"}]}
    )
    limiter = Limiter(counters, config, clock=clock)
    limiter.set_key("a", team="platform")
    limiter.set_key("b", customer="acme")
    spent = await limiter.reserve("a", Usage(usd=0.6))
    await limiter.settle(spent, Usage(usd=0.6))
    with pytest.raises(BudgetDenied) as denied:
        await limiter.reserve("b", Usage(usd=0.5))
    assert denied.value.entity == CUSTOMER
    assert denied.value.limit == 1.0
    assert "retry-after" not in denied.value.headers
    ok = await limiter.reserve("b", Usage(usd=0.4))
    assert ok.budget_remaining_usd == pytest.approx(0.0)
    with pytest.raises(BudgetDenied):  # exhausted: even a call estimated at zero is refused
        await limiter.reserve("a", Usage(usd=0.0))


async def test_a_budget_is_overspent_by_at_most_the_overrun_of_calls_in_flight(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("ci-bot", budget=BudgetConfig(max_usd=1.0, reset="1d"))
    all_decided = anyio.Event()
    admitted = 0
    refused = 0

    def decided() -> None:
        if admitted + refused == 60:
            all_decided.set()

    async def call() -> None:
        nonlocal admitted, refused
        try:
            reservation = await limiter.reserve("ci-bot", Usage(usd=0.05))
        except BudgetDenied:
            refused += 1
            decided()
            return
        admitted += 1
        decided()
        await all_decided.wait()  # every admitted call is in flight at once
        await limiter.settle(reservation, Usage(usd=0.06))  # each call overruns its estimate by 0.01

    with anyio.fail_after(PATIENCE):
        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(call)
    assert (admitted, refused) == (20, 40)
    usd = _by_metric(await limiter.usage(KEY))["usd"]
    assert usd.used == pytest.approx(1.0 + admitted * 0.01)
    assert usd.in_flight == 0
    with pytest.raises(BudgetDenied):
        await limiter.reserve("ci-bot", Usage(usd=0.0))


async def test_settle_replaces_the_estimate_and_is_idempotent(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock)
    rate = RateLimitConfig(requests=100, tokens=1000, period="1m")
    limiter.set_key("ci-bot", rate_limit=rate, budget=BudgetConfig(max_usd=10, reset="1d"))
    reservation = await limiter.reserve("ci-bot", Usage(tokens=500, usd=2.0))
    assert reservation.tokens is not None and reservation.tokens.remaining == 500
    await limiter.settle(reservation, Usage(tokens=120, usd=0.25))
    await limiter.settle(reservation, Usage(tokens=999, usd=9.0))
    await limiter.refund(reservation)
    snapshot = _by_metric(await limiter.usage(KEY))
    assert [(s.used, s.in_flight) for s in snapshot.values()] == [(1, 0), (120, 0), (0.25, 0)]


async def test_refund_returns_the_whole_reservation(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("ci-bot", rate_limit=RateLimitConfig(requests=1, tokens=10, period="1s"))
    first = await limiter.reserve("ci-bot", Usage(tokens=10))
    with pytest.raises(RateLimitDenied):
        await limiter.reserve("ci-bot", Usage(tokens=0))
    await limiter.refund(first)
    again = await limiter.reserve("ci-bot", Usage(tokens=10))
    assert again.requests is not None and again.requests.remaining == 0


async def test_a_cancelled_caller_still_refunds(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("ci-bot", rate_limit=RateLimitConfig(requests=1, period="1h"))
    started = anyio.Event()

    async def call() -> None:
        reservation = await limiter.reserve("ci-bot")
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            await limiter.refund(reservation)  # runs shielded although the scope is cancelled

    with anyio.fail_after(PATIENCE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await started.wait()
            tg.cancel_scope.cancel()
    assert _by_metric(await limiter.usage(KEY))["requests"].in_flight == 0
    await limiter.reserve("ci-bot")


async def test_a_window_rollover_loses_no_usage(counters: Counters, clock: ManualClock):
    clock.now = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("ci-bot", budget=BudgetConfig(max_usd=1.0, reset="1M", calendar_aligned=True))
    january = clock.now
    reservation = await limiter.reserve("ci-bot", Usage(usd=0.9))
    clock.advance(2)  # now in February
    fresh = await limiter.reserve("ci-bot", Usage(usd=0.9))  # a new window: January's hold does not count
    await limiter.settle(reservation, Usage(usd=0.7))
    await limiter.settle(fresh, Usage(usd=0.1))
    [jan] = await limiter.usage(KEY, at=january)
    [feb] = await limiter.usage(KEY)
    assert (jan.used, jan.in_flight) == (pytest.approx(0.7), 0)
    assert (feb.used, feb.in_flight) == (pytest.approx(0.1), 0)
    assert datetime.fromtimestamp(feb.window_start, UTC) == datetime(2026, 2, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(feb.resets_at, UTC) == datetime(2026, 3, 1, tzinfo=UTC)


async def test_rate_windows_reset_and_report_the_time_left(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("ci-bot", rate_limit=RateLimitConfig(requests=2, tokens=100, period="1m"))
    clock.advance(15)  # 45 s left in the minute
    first = await limiter.reserve("ci-bot", Usage(tokens=40))
    assert first.headers() == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "45s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "60",
        "x-ratelimit-reset-tokens": "45s",
    }
    await limiter.settle(first, Usage(tokens=40))
    await limiter.reserve("ci-bot")
    clock.advance(14.5)
    with pytest.raises(RateLimitDenied) as denied:
        await limiter.reserve("ci-bot")
    assert denied.value.retry_after == 31
    assert denied.value.headers["x-ratelimit-reset-requests"] == "30.5s"
    clock.advance(30.5)
    assert (await limiter.reserve("ci-bot")).requests is not None


async def test_an_orphaned_reservation_expires_and_a_late_settle_still_counts(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock, lease=30)
    limiter.set_key("ci-bot", budget=BudgetConfig(max_usd=1.0, reset="1d", calendar_aligned=True))
    orphan = await limiter.reserve("ci-bot", Usage(usd=1.0))
    with pytest.raises(BudgetDenied):
        await limiter.reserve("ci-bot", Usage(usd=0.1))
    clock.advance(31)
    later = await limiter.reserve("ci-bot", Usage(usd=0.5))
    await limiter.settle(orphan, Usage(usd=0.25))
    await limiter.settle(later, Usage(usd=0.5))
    [usd] = await limiter.usage(KEY)
    assert (usd.used, usd.in_flight) == (pytest.approx(0.75), 0)


async def test_reset_usage_zeroes_the_current_window_only(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, _config(budget={"max_usd": 5, "reset": "1w", "calendar_aligned": True}), clock=clock)
    limiter.set_key("ci-bot", team="platform")
    done = await limiter.reserve("ci-bot", Usage(usd=2))
    await limiter.settle(done, Usage(usd=2))
    running = await limiter.reserve("ci-bot", Usage(usd=1))
    await limiter.reset_usage(TEAM, Metric.USD)
    [team] = await limiter.usage(TEAM)
    assert (team.used, team.in_flight, team.remaining) == (0, 1, 4)
    assert datetime.fromtimestamp(team.resets_at, UTC).weekday() == 0
    [customer] = await limiter.usage(CUSTOMER)
    assert customer.used == 2
    await limiter.refund(running)


async def test_keys_with_unknown_parents_or_none_are_refused(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, _config(), clock=clock)
    with pytest.raises(UnknownSubject):
        await limiter.reserve("nobody")
    limiter.set_key("stray", team="ghosts")
    with pytest.raises(UnknownSubject, match="unknown team"):
        await limiter.reserve("stray")
    limiter.set_key("direct", customer="globex")
    with pytest.raises(UnknownSubject, match="unknown customer"):
        await limiter.reserve("direct")
    limiter.configure(GovernanceConfig.model_validate({"customers": [{"name": "globex"}]}))
    assert (await limiter.reserve("direct")).headers() == {}
    limiter.remove_key("direct")
    with pytest.raises(UnknownSubject):
        await limiter.reserve("direct")
    with pytest.raises(UnknownSubject):
        await limiter.usage(EntityRef(EntityKind.TEAM, "ghosts"))


async def test_negative_usage_is_refused(counters: Counters, clock: ManualClock):
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("ci-bot")
    with pytest.raises(ValueError, match="non-negative"):
        await limiter.reserve("ci-bot", Usage(tokens=-1))
    reservation = await limiter.reserve("ci-bot")
    with pytest.raises(ValueError, match="non-negative"):
        await limiter.settle(reservation, Usage(usd=float("nan")))
    await limiter.refund(reservation)


class _CountingCounters(InMemoryCounters):
    """In-memory counters that count the reservations and settlements they were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def reserve(self, slots: Sequence[Slot], *, hold_id: str, now: float, lease: float) -> ReserveResult:
        self.calls += 1
        return await super().reserve(slots, hold_id=hold_id, now=now, lease=lease)

    async def settle(self, slots: Sequence[Slot], *, hold_id: str, now: float) -> None:
        self.calls += 1
        await super().settle(slots, hold_id=hold_id, now=now)


async def test_a_key_no_level_limits_never_touches_the_counters(clock: ManualClock):
    counters = _CountingCounters()
    limiter = Limiter(counters, _config(), clock=clock)
    limiter.set_key("free", team=None)
    for _ in range(3):
        reservation = await limiter.reserve("free", Usage(requests=1, tokens=10, usd=0.5))
        assert reservation.headers() == {} and reservation.requests is None
        await limiter.settle(reservation, Usage(requests=1, tokens=12, usd=0.6))
        await limiter.refund(await limiter.reserve("free"))
    assert counters.calls == 0
    limiter.set_key("capped", rate_limit=RateLimitConfig(requests=5, period="1m"))  # a limit: counted as before
    await limiter.settle(await limiter.reserve("capped"), Usage())
    assert counters.calls == 2

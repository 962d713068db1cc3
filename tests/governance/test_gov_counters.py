"""The Counters contract on both stores, and conservation of reserve/settle/refund under hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from hub.governance.counters import Counters, Slot, SlotValue
from hub.store.counters import InMemoryCounters
from tests.tools.asyncrun import run_async

pytestmark = pytest.mark.anyio


async def test_a_reservation_is_all_or_nothing(counters: Counters):
    wide, narrow = Slot("wide", 10, 3, 60), Slot("narrow", 4, 3, 60)
    first = await counters.reserve([wide, narrow], hold_id="a", now=0, lease=60)
    assert first.granted and first.values == (SlotValue(0, 3), SlotValue(0, 3))
    second = await counters.reserve([wide, narrow], hold_id="b", now=0, lease=60)
    assert second.refused == 1 and second.values == (SlotValue(0, 3), SlotValue(0, 3))
    assert await counters.read(["wide", "narrow", "never"], now=0) == [SlotValue(0, 3), SlotValue(0, 3), SlotValue()]


async def test_settle_swaps_the_hold_for_actual_usage_once(counters: Counters):
    slot = Slot("s", 100, 40, 60)
    await counters.reserve([slot], hold_id="a", now=0, lease=60)
    await counters.settle([Slot("s", 100, 25, 60)], hold_id="a", now=1)
    assert await counters.read(["s"], now=1) == [SlotValue(25, 0)]
    await counters.settle([Slot("s", 100, 0, 60)], hold_id="a", now=1)  # the lease is gone: no double release
    assert await counters.read(["s"], now=1) == [SlotValue(25, 0)]


async def test_zero_amounts_need_room_left_but_hold_nothing(counters: Counters):
    full = Slot("z", 2, 0, 60)
    assert (await counters.reserve([Slot("z", 2, 2, 60)], hold_id="a", now=0, lease=60)).granted
    assert (await counters.reserve([full], hold_id="b", now=0, lease=60)).refused == 0
    await counters.settle([Slot("z", 2, 1, 60)], hold_id="a", now=0)
    assert (await counters.reserve([full], hold_id="c", now=0, lease=60)).values == (SlotValue(1, 0),)


async def test_expired_leases_are_released_and_reset_keeps_holds(counters: Counters):
    await counters.reserve([Slot("e", 10, 4, 600)], hold_id="old", now=0, lease=10)
    await counters.reserve([Slot("e", 10, 5, 600)], hold_id="new", now=5, lease=100)
    await counters.settle([Slot("e", 10, 2, 600)], hold_id="x", now=5)
    assert await counters.read(["e"], now=9.999) == [SlotValue(2, 9)]
    assert await counters.read(["e"], now=10) == [SlotValue(2, 5)]
    await counters.reset(["e", "absent"], now=10)
    assert await counters.read(["e", "absent"], now=10) == [SlotValue(0, 5), SlotValue()]


async def test_counters_past_their_ttl_are_forgotten():
    counters = InMemoryCounters(gc_interval=10)
    await counters.reserve([Slot("short", 5, 1, 30)], hold_id="a", now=0, lease=5)
    await counters.settle([Slot("short", 5, 1, 30)], hold_id="a", now=1)
    await counters.reserve([Slot("long", 5, 1, 300)], hold_id="b", now=1, lease=5)
    assert len(counters) == 2
    await counters.reserve([Slot("other", 5, 0, 300)], hold_id="c", now=31, lease=5)
    assert len(counters) == 2  # "short" expired at 30; "long" still holds
    await counters.aclose()


operations = st.lists(
    st.tuples(st.integers(0, 20), st.sampled_from(["settle", "refund", "keep"]), st.integers(0, 30)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops=operations, limit=st.integers(0, 100))
def test_reserve_settle_refund_conserve_usage(ops: list[tuple[int, str, int]], limit: int):
    """used == sum of settled actuals; held == sum of open reservations; admission never passes the limit."""

    async def run() -> None:
        counters = InMemoryCounters()
        settled = held = 0
        for n, (amount, fate, actual) in enumerate(ops):
            result = await counters.reserve([Slot("k", limit, amount, 60)], hold_id=str(n), now=0, lease=60)
            before = settled + held
            assert result.granted == (before < limit and before + amount <= limit)
            if not result.granted:
                continue
            held += amount
            if fate == "settle":
                await counters.settle([Slot("k", limit, actual, 60)], hold_id=str(n), now=0)
                held -= amount
                settled += actual
            elif fate == "refund":
                await counters.settle([Slot("k", limit, 0, 60)], hold_id=str(n), now=0)
                held -= amount
            assert await counters.read(["k"], now=0) == [SlotValue(settled, held)]

    run_async(run)

"""The `Counters` contract over the socket: the contract tests of the in-memory and Redis stores, run again on
`SocketCounters`, and a property test that a random sequence of operations gets the same answers over the socket
as from `InMemoryCounters` in the caller's own process."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from hub.governance.counters import Slot
from hub.store.counters import InMemoryCounters
from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters
from tests.governance.test_gov_counters import (
    test_a_reservation_is_all_or_nothing,
    test_expired_leases_are_released_and_reset_keeps_holds,
    test_settle_swaps_the_hold_for_actual_usage_once,
    test_zero_amounts_need_room_left_but_hold_nothing,
)
from tests.tools.asyncrun import run_async

pytestmark = pytest.mark.anyio

__all__ = [
    "test_a_reservation_is_all_or_nothing",
    "test_expired_leases_are_released_and_reset_keeps_holds",
    "test_settle_swaps_the_hold_for_actual_usage_once",
    "test_zero_amounts_need_room_left_but_hold_nothing",
]

_KEYS = ["a", "b", "c"]
_operation = st.one_of(
    st.tuples(
        st.just("reserve"),
        st.lists(st.tuples(st.sampled_from(_KEYS), st.integers(0, 12), st.integers(0, 6)), min_size=1, max_size=3),
        st.integers(0, 5),
        st.floats(0.5, 20),
    ),
    st.tuples(
        st.just("settle"),
        st.lists(st.tuples(st.sampled_from(_KEYS), st.integers(0, 12), st.integers(0, 6)), min_size=1, max_size=3),
        st.integers(0, 5),
        st.just(0.0),
    ),
    st.tuples(st.sampled_from(["read", "reset"]), st.just([]), st.just(0), st.just(0.0)),
)


@settings(max_examples=60)
@given(ops=st.lists(_operation, max_size=25), steps=st.lists(st.floats(0, 5), min_size=25, max_size=25))
def test_any_sequence_of_operations_answers_as_the_in_memory_counters_do(
    ops: list[tuple[str, list[tuple[str, int, int]], int, float]], steps: list[float]
) -> None:
    async def run(path: str) -> None:
        local = InMemoryCounters()
        remote = SocketCounters(path)
        now = 0.0
        try:
            for (kind, slots, hold, lease), step in zip(ops, steps, strict=False):
                now += step
                chosen = [Slot(key, limit, amount, 60.0) for key, limit, amount in slots]
                if kind == "reserve":
                    expected = await local.reserve(chosen, hold_id=str(hold), now=now, lease=lease)
                    got = await remote.reserve(chosen, hold_id=str(hold), now=now, lease=lease)
                    assert got == expected
                elif kind == "settle":
                    await local.settle(chosen, hold_id=str(hold), now=now)
                    await remote.settle(chosen, hold_id=str(hold), now=now)
                elif kind == "reset":
                    await local.reset(_KEYS, now=now)
                    await remote.reset(_KEYS, now=now)
                assert await remote.read(_KEYS, now=now) == await local.read(_KEYS, now=now)
        finally:
            await remote.aclose()

    with (
        tempfile.TemporaryDirectory(prefix="ahc-", dir="/tmp") as directory,
        CounterServer(str(Path(directory) / "c.sock")) as server,
    ):
        run_async(run, server.path)

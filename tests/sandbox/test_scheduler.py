"""Which run gets the next idle worker: the scheduler alone, with strings standing in for workers."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from sandbox.scheduler import FairScheduler

pytestmark = pytest.mark.anyio


class Runs:
    """Starts acquisitions as tasks and records, in order, which run got which item. Leaving `async with` waits."""

    def __init__(self, scheduler: FairScheduler[str]) -> None:
        self.scheduler = scheduler
        self.group = anyio.create_task_group()
        self.got: list[tuple[str, str]] = []
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def __aenter__(self) -> Runs:
        await self.group.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.group.__aexit__(*exc_info)

    async def start(self, name: str, owner: str | None) -> None:
        """Start run `name` and return once it holds an item or waits for one."""
        scope = self.scopes[name] = anyio.CancelScope()

        async def acquire() -> None:
            with scope:
                self.got.append((name, await self.scheduler.acquire(owner)))

        self.group.start_soon(acquire)
        await anyio.wait_all_tasks_blocked()


async def test_idle_items_go_to_waiting_runs_first_come_first_served() -> None:
    scheduler = FairScheduler[str](per_owner=5)
    runs = Runs(scheduler)
    with anyio.fail_after(10):
        async with runs:
            for name in ("a", "b", "c"):
                await runs.start(name, name)
            assert scheduler.waiting == 3
            scheduler.put("w1")
            scheduler.put("w2")
            await anyio.wait_all_tasks_blocked()
            assert runs.got == [("a", "w1"), ("b", "w2")]
            scheduler.release("a", "w1")
    assert runs.got == [("a", "w1"), ("b", "w2"), ("c", "w1")]
    assert scheduler.waiting == 0


async def test_a_run_over_its_owners_limit_waits_and_lets_other_owners_pass() -> None:
    scheduler = FairScheduler[str](per_owner=1)
    scheduler.put("w1")
    scheduler.put("w2")
    runs = Runs(scheduler)
    with anyio.fail_after(10):
        async with runs:
            await runs.start("a1", "A")
            await runs.start("a2", "A")
            assert runs.got == [("a1", "w1")]
            assert scheduler.waiting == 1  # a2 waits for A's slot although w2 is idle
            await runs.start("b1", "B")
            assert runs.got == [("a1", "w1"), ("b1", "w2")]
            assert (scheduler.running("A"), scheduler.running("B")) == (1, 1)
            scheduler.release("A", "w1")
    assert runs.got == [("a1", "w1"), ("b1", "w2"), ("a2", "w1")]


async def test_a_run_that_gets_its_owners_slot_queues_behind_runs_already_waiting_for_a_worker() -> None:
    scheduler = FairScheduler[str](per_owner=1)
    scheduler.put("w1")
    runs = Runs(scheduler)
    with anyio.fail_after(10):
        async with runs:
            await runs.start("a1", "A")
            await runs.start("a2", "A")  # waits for A's slot
            await runs.start("b1", "B")  # waits for a worker
            scheduler.release("A", "w1")
            await anyio.wait_all_tasks_blocked()
            assert runs.got == [("a1", "w1"), ("b1", "w1")]  # b1 waited for the worker; a2 waited for A
            scheduler.release("B", "w1")
    assert runs.got == [("a1", "w1"), ("b1", "w1"), ("a2", "w1")]


async def test_runs_without_an_owner_are_not_limited() -> None:
    scheduler = FairScheduler[str](per_owner=1)
    for item in ("w1", "w2", "w3"):
        scheduler.put(item)
    got = [await scheduler.acquire(None) for _ in range(3)]
    assert got == ["w1", "w2", "w3"]
    assert scheduler.running(None) == 0


async def test_unusable_items_are_dropped() -> None:
    dead = {"w1"}
    scheduler = FairScheduler[str](per_owner=2, usable=lambda item: item not in dead)
    scheduler.put("w1")
    scheduler.put("w2")
    assert await scheduler.acquire("A") == "w2"
    scheduler.release("A", "w2")
    dead.add("w2")
    scheduler.put("w3")
    assert await scheduler.acquire("A") == "w3"


async def test_a_cancelled_run_gives_up_its_place_and_its_owners_slot() -> None:
    scheduler = FairScheduler[str](per_owner=1)
    scheduler.put("w1")
    runs = Runs(scheduler)
    with anyio.fail_after(10):
        async with runs:
            await runs.start("a1", "A")
            await runs.start("a2", "A")  # waits for A's slot
            await runs.start("b1", "B")  # waits for a worker, holding B's slot
            await runs.start("b2", "B")  # waits for B's slot
            assert scheduler.waiting == 3
            runs.scopes["a2"].cancel()
            runs.scopes["b1"].cancel()
            await anyio.wait_all_tasks_blocked()
            assert scheduler.waiting == 1  # b2 got B's slot and now waits for a worker
            assert (scheduler.running("A"), scheduler.running("B")) == (1, 1)
            scheduler.release("A", "w1")
    assert runs.got == [("a1", "w1"), ("b2", "w1")]
    assert (scheduler.running("A"), scheduler.running("B"), scheduler.waiting) == (0, 1, 0)


async def test_a_run_cancelled_just_after_it_was_given_an_item_passes_the_item_on() -> None:
    scheduler = FairScheduler[str](per_owner=1)
    runs = Runs(scheduler)
    with anyio.fail_after(10):
        async with runs:
            await runs.start("a1", "A")
            await runs.start("b1", "B")
            runs.scopes["a1"].cancel()  # a1 is cancelled, but before it resumes to give up its place ...
            scheduler.put("w1")  # ... it is handed w1
    assert runs.got == [("b1", "w1")]
    assert (scheduler.running("A"), scheduler.running("B")) == (0, 1)


def test_per_owner_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_owner"):
        FairScheduler[str](per_owner=0)


async def test_an_owner_holds_up_to_per_owner_slots_and_a_run_may_end_without_its_item() -> None:
    scheduler = FairScheduler[str](per_owner=2)
    scheduler.put("w1")
    runs = Runs(scheduler)
    with anyio.fail_after(10):
        async with runs:
            await runs.start("a1", "A")
            await runs.start("a2", "A")  # holds A's second slot, waits for a worker
            await runs.start("a3", "A")  # waits for A's slot
            await runs.start("a4", "A")
            assert (scheduler.running("A"), scheduler.waiting) == (2, 3)
            runs.scopes["a4"].cancel()
            await anyio.wait_all_tasks_blocked()
            assert (scheduler.running("A"), scheduler.waiting) == (2, 2)
            scheduler.release("A", None)  # a1's worker died with its run: a3 takes the slot, nobody gets w1
            assert (scheduler.running("A"), scheduler.waiting) == (2, 2)
            scheduler.put("w2")
            await anyio.wait_all_tasks_blocked()
            scheduler.release("A", "w2")
    assert runs.got == [("a1", "w1"), ("a2", "w2"), ("a3", "w2")]


async def test_idle_counts_the_items_not_handed_out() -> None:
    scheduler = FairScheduler[str](per_owner=2)
    scheduler.put("w1")
    scheduler.put("w2")
    assert scheduler.idle == 2
    taken = await scheduler.acquire("alice")
    assert scheduler.idle == 1
    scheduler.release("alice", taken)
    assert scheduler.idle == 2

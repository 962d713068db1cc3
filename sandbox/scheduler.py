"""Which run gets the next idle worker: first come, first served, with at most ``per_owner`` runs per owner at a time.

A run first takes a slot of its owner (the hub passes the virtual key), then waits in one queue for a worker. A run
over its owner's limit waits in that owner's own queue and is not in the worker queue at all, so it never takes a
worker another owner is waiting for; when one of its owner's runs ends, it gets the slot and joins the worker queue
at the back. Runs without an owner take no slot. Everything happens in the event loop's thread, without locks: a
run that is handed a worker just as it is cancelled passes the worker on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter(Generic[T]):
    owner: str | None
    granted: anyio.Event = field(default_factory=anyio.Event)
    has_slot: bool = False
    item: T | None = None


class FairScheduler(Generic[T]):
    """Idle items (workers) and the runs waiting for one.

    Args:
        per_owner: how many runs one owner may hold at a time.
        usable: whether an idle item can still be handed out (a dead worker is dropped instead).
    """

    def __init__(self, per_owner: int, usable: Callable[[T], bool] = lambda _: True) -> None:
        if per_owner < 1:
            raise ValueError("per_owner must be >= 1")
        self.per_owner = per_owner
        self._usable = usable
        self._idle: deque[T] = deque()
        self._slots: dict[str, int] = {}
        self._slot_queues: dict[str, deque[_Waiter[T]]] = {}
        self._worker_queue: deque[_Waiter[T]] = deque()

    @property
    def idle(self) -> int:
        """Items waiting to be handed out."""
        return len(self._idle)

    @property
    def waiting(self) -> int:
        """Runs waiting for a worker or for their owner's slot."""
        return len(self._worker_queue) + sum(len(queue) for queue in self._slot_queues.values())

    def running(self, owner: str | None) -> int:
        """Slots ``owner`` holds: its runs that hold a worker or wait for one (0 for runs without an owner)."""
        return 0 if owner is None else self._slots.get(owner, 0)

    def put(self, item: T) -> None:
        """Add an idle item (a new worker); the first run waiting for one gets it."""
        self._idle.append(item)
        self._dispatch()

    async def acquire(self, owner: str | None) -> T:
        """Wait for an item: first for a slot of ``owner``, then for an idle item. Cancelling gives up the place."""
        waiter = _Waiter[T](owner)
        if owner is None or self.running(owner) < self.per_owner:
            self._take_slot(waiter)
        else:
            self._slot_queues.setdefault(owner, deque()).append(waiter)
        self._dispatch()
        try:
            await waiter.granted.wait()
        except BaseException:
            self._withdraw(waiter)
            raise
        assert waiter.item is not None
        return waiter.item

    def release(self, owner: str | None, item: T | None) -> None:
        """A run of ``owner`` ended: ``item`` is idle again (unless it is no longer usable) and the slot is free."""
        if item is not None:
            self._idle.append(item)
        self._free_slot(owner)
        self._dispatch()

    # -- internals --------------------------------------------------------------------------------------------------
    def _take_slot(self, waiter: _Waiter[T]) -> None:
        if waiter.owner is not None:
            self._slots[waiter.owner] = self._slots.get(waiter.owner, 0) + 1
        waiter.has_slot = True
        self._worker_queue.append(waiter)

    def _free_slot(self, owner: str | None) -> None:
        if owner is None:
            return
        held = self._slots[owner] - 1
        if held:
            self._slots[owner] = held
        else:
            del self._slots[owner]
        queue = self._slot_queues.get(owner)
        if queue:
            self._take_slot(queue.popleft())
            if not queue:
                del self._slot_queues[owner]

    def _dispatch(self) -> None:
        while self._worker_queue and self._idle:
            item = self._idle.popleft()
            if not self._usable(item):
                continue
            waiter = self._worker_queue.popleft()
            waiter.item = item
            waiter.granted.set()

    def _withdraw(self, waiter: _Waiter[T]) -> None:
        if waiter.item is not None:  # handed an item just as it was cancelled: pass it on
            self.release(waiter.owner, waiter.item)
        elif waiter.has_slot:
            self._worker_queue.remove(waiter)
            self._free_slot(waiter.owner)
            self._dispatch()
        else:
            assert waiter.owner is not None
            queue = self._slot_queues[waiter.owner]
            queue.remove(waiter)
            if not queue:
                del self._slot_queues[waiter.owner]

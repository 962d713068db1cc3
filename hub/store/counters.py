"""`InMemoryCounters`: the `hub.governance.counters.Counters` of one process (the embedded default); see
`hub.store.redis_counters` for counters shared by replicas."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar

from hub.governance.counters import ReserveResult, Slot, SlotValue

__all__ = ["InMemoryCounters"]


class _Cell:
    """One counter. A plain class with slots rather than a dataclass: the counter server runs this module in the
    supervisor of `agenthub serve --workers N`, whose memory is budgeted, and `dataclasses` loads `inspect` and
    `ast`."""

    __slots__ = ("expires", "held", "leases", "next_deadline", "used")

    def __init__(self) -> None:
        self.used = 0
        self.held = 0
        self.expires = 0.0
        self.next_deadline = float("inf")
        self.leases: dict[str, tuple[int, float]] = {}

    def release_expired(self, now: float) -> None:
        if now < self.next_deadline:
            return
        keep: dict[str, tuple[int, float]] = {}
        for hold_id, (amount, deadline) in self.leases.items():
            if deadline <= now:
                self.held -= amount
            else:
                keep[hold_id] = (amount, deadline)
        self.leases = keep
        self.next_deadline = min((d for _, d in keep.values()), default=float("inf"))

    def value(self) -> SlotValue:
        return SlotValue(self.used, self.held)


class InMemoryCounters:
    """Counters in this process's memory: exact under any concurrency within the process."""

    awaits_io: ClassVar[bool] = False

    def __init__(self, *, gc_interval: float = 60.0) -> None:
        self._cells: dict[str, _Cell] = {}
        self._lock = threading.Lock()
        self._gc_interval = gc_interval
        self._next_gc = 0.0

    def _cell(self, key: str) -> _Cell:
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        return cell

    def _collect(self, now: float) -> None:
        self._next_gc = now + self._gc_interval
        for key in [k for k, c in self._cells.items() if c.expires <= now and not c.leases]:
            del self._cells[key]

    async def reserve(self, slots: Sequence[Slot], *, hold_id: str, now: float, lease: float) -> ReserveResult:
        """See `Counters.reserve`."""
        with self._lock:
            if now >= self._next_gc:
                self._collect(now)
            store = self._cells
            cells: list[_Cell] = []
            refused = -1
            for index, (key, limit, amount, _) in enumerate(slots):
                cell = store.get(key)
                if cell is None:
                    cell = store[key] = _Cell()
                elif now >= cell.next_deadline:
                    cell.release_expired(now)
                cells.append(cell)
                total = cell.used + cell.held
                if refused < 0 and (total >= limit or total + amount > limit):
                    refused = index
            if refused < 0:
                deadline = now + lease
                for (_, _, amount, ttl), cell in zip(slots, cells, strict=True):
                    if amount:
                        cell.held += amount
                        cell.leases[hold_id] = (amount, deadline)
                        if deadline < cell.next_deadline:
                            cell.next_deadline = deadline
                    if now + ttl > cell.expires:
                        cell.expires = now + ttl
            return ReserveResult(refused, tuple([SlotValue(c.used, c.held) for c in cells]))

    async def settle(self, slots: Sequence[Slot], *, hold_id: str, now: float) -> None:
        """See `Counters.settle`."""
        with self._lock:
            for slot in slots:
                cell = self._cell(slot.key)
                lease = cell.leases.pop(hold_id, None)
                if lease is not None:
                    cell.held -= lease[0]
                cell.used += slot.amount
                cell.expires = max(cell.expires, now + slot.ttl)

    async def read(self, keys: Sequence[str], *, now: float) -> list[SlotValue]:
        """See `Counters.read`."""
        with self._lock:
            values: list[SlotValue] = []
            for key in keys:
                cell = self._cells.get(key)
                if cell is None:
                    values.append(SlotValue())
                else:
                    cell.release_expired(now)
                    values.append(cell.value())
            return values

    async def reset(self, keys: Sequence[str], *, now: float) -> None:
        """See `Counters.reset`."""
        with self._lock:
            for key in keys:
                cell = self._cells.get(key)
                if cell is not None:
                    cell.used = 0

    async def aclose(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._cells)

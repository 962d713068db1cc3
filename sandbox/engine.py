"""The wasmtime side of one worker: engine, compiled guest, host functions and one fresh instance per run.

This module runs inside a sandbox worker process (``sandbox.worker``), never in the hub process: a wasmtime abort
takes down only the worker. ``GuestRuntime.run`` is synchronous and single-threaded; the guest's tool calls arrive
on the same thread through :class:`Bridge`, which the worker connects to its parent over a pipe.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmtime import Config, Engine, Store, Trap, WasmtimeError
from wasmtime.component import Component, Linker, Variant

EPOCH_TICK = 0.01
"""Seconds between two epoch increments; the wall-time limit is enforced with this granularity."""

TOOLS_INTERFACE = "agenthub:sandbox/tools@0.1.0"
"""The only import of the guest component."""

UNLIMITED_FUEL = 1 << 62

Bridge = Callable[[Sequence[tuple[str, str]]], list[tuple[bool, str]]]
"""Carries a batch of ``(tool name, arguments JSON)`` to the host and returns ``(ok, JSON or message)`` per call."""


def make_engine(*, fuel: bool) -> Engine:
    """The engine configuration; compiling and loading must use the same one (it is part of the cache key)."""
    config = Config()
    config.wasm_component_model = True
    config.epoch_interruption = True
    config.consume_fuel = fuel
    return Engine(config)


@dataclass(frozen=True, slots=True)
class RunBudget:
    """What the worker enforces on one run (a subset of ``SandboxLimits``)."""

    wall_time: float
    memory_bytes: int
    fuel: int | None


@dataclass(slots=True)
class _RunState:
    bridge: Bridge
    wall_time: float
    guest_time: float = 0.0
    tool_time: float = 0.0
    segment_start: float = 0.0


@dataclass(frozen=True, slots=True)
class RawOutcome:
    """What one run produced: the guest's JSON outcome, or a trap classified by ``kind``."""

    outcome_json: str | None
    trap_kind: str | None
    trap_message: str
    guest_time: float
    tool_time: float
    fuel_used: int | None


class GuestRuntime:
    """A compiled guest plus a linker whose only definitions are the two ``tools`` functions."""

    def __init__(self, artifact: Path, *, fuel: bool) -> None:
        self.fuel = fuel
        self.engine = make_engine(fuel=fuel)
        self.component = Component.deserialize_file(self.engine, str(artifact))
        self.linker = Linker(self.engine)
        with self.linker.root() as root, root.add_instance(TOOLS_INTERFACE) as tools:
            tools.add_func("call", self._call)
            tools.add_func("call-many", self._call_many)
        self._state: _RunState | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="sandbox-epoch", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop the epoch ticker."""
        self._stop.set()
        self._ticker.join()

    def _tick(self) -> None:
        while not self._stop.wait(EPOCH_TICK):
            self.engine.increment_epoch()

    def run(self, code: str, config_json: str, budget: RunBudget, bridge: Bridge) -> RawOutcome:
        """Run one program in a fresh store and instance; never raises for anything the guest does."""
        state = _RunState(bridge=bridge, wall_time=budget.wall_time)
        self._state = state
        store = Store(self.engine)
        store.set_limits(memory_size=budget.memory_bytes)
        fuel = budget.fuel if budget.fuel is not None else UNLIMITED_FUEL
        if self.fuel:
            store.set_fuel(fuel)
        store.set_epoch_deadline(_ticks(budget.wall_time))
        state.segment_start = time.perf_counter()
        outcome: str | None = None
        kind: str | None = None
        message = ""
        try:
            instance = self.linker.instantiate(store, self.component)
            func = instance.get_func(store, "run")
            if func is None:  # pragma: no cover - the world guarantees the export
                raise WasmtimeError("guest has no `run` export")
            outcome = str(func(store, code, config_json))
            func.post_return(store)
        except (Trap, WasmtimeError) as exc:
            kind, message = classify_trap(str(exc))
        finally:
            state.guest_time += time.perf_counter() - state.segment_start
            self._state = None
        used = fuel - store.get_fuel() if self.fuel else None
        return RawOutcome(outcome, kind, message, state.guest_time, state.tool_time, used)

    # -- host functions: called synchronously on the thread running the guest --------------------------------------
    def _call(self, store: Any, name: str, args_json: str) -> Variant:
        ((ok, text),) = self._dispatch(store, [(name, args_json)])
        return Variant("ok" if ok else "err", text)

    def _call_many(self, store: Any, calls: Sequence[tuple[str, str]]) -> list[Variant]:
        replies = self._dispatch(store, [(str(name), str(args)) for name, args in calls])
        return [Variant("ok" if ok else "err", text) for ok, text in replies]

    def _dispatch(self, store: Any, calls: list[tuple[str, str]]) -> list[tuple[bool, str]]:
        state = self._state
        if state is None:  # pragma: no cover - only reachable if the guest outlives its run
            return [(False, "no active run")] * len(calls)
        started = time.perf_counter()
        state.guest_time += started - state.segment_start
        try:
            replies = state.bridge(calls)
        except Exception as exc:  # never raise into wasmtime
            replies = [(False, f"tool bridge failed: {exc}")] * len(calls)
        finished = time.perf_counter()
        state.tool_time += finished - started
        state.segment_start = finished
        # Tool time does not count against the guest's budget: re-arm the deadline with what is left.
        Store.set_epoch_deadline(store, _ticks(state.wall_time - state.guest_time))
        return replies


def _ticks(seconds: float) -> int:
    return max(1, math.ceil(seconds / EPOCH_TICK))


def classify_trap(text: str) -> tuple[str, str]:
    """Map a wasmtime trap message to an error kind and a message the model can act on."""
    if "wasm trap: interrupt" in text:
        return "timeout", "the program ran out of time (wall-time limit); do less work per run"
    if "all fuel consumed" in text:
        return "fuel", "the program used its whole CPU budget (fuel); do less work per run"
    if "call stack exhausted" in text:
        return "recursion", "the program exhausted the stack (recursion too deep)"
    if "memory" in text and ("limit" in text or "minimum" in text or "grow" in text):
        return "memory", "the sandbox could not allocate its memory (memory limit too low)"
    if "unreachable" in text:
        return "trap", "the program used a capability the sandbox does not provide (files, network, clock)"
    first = text.strip().splitlines()[0] if text.strip() else "unknown trap"
    return "trap", f"the sandbox stopped the program: {first}"

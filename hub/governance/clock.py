"""Clocks: every time-dependent part of governance takes one, so tests never sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "system_clock"]

Clock = Callable[[], float]
"""Returns Unix seconds (UTC)."""

system_clock: Clock = time.time
"""The real clock."""


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.now += seconds

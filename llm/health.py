"""Circuit breaker per hop (provider, model, key): failures open it for a cooldown, then it half-opens."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["CircuitBreaker"]


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreaker:
    """`failures` consecutive failures open a hop for `cooldown` seconds; after that one success closes it.

    While half-open (cooldown over, failures not yet reset) a single new failure reopens it at once.
    `trip(hop, seconds)` opens a hop immediately (a 429 with Retry-After, a rejected key).
    """

    def __init__(self, *, failures: int, cooldown: float, clock: Callable[[], float]) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._states: dict[Hashable, _State] = {}

    def available(self, hop: Hashable) -> bool:
        """True unless the hop is open (cooling down)."""
        state = self._states.get(hop)
        return state is None or state.open_until <= self._clock()

    def success(self, hop: Hashable) -> None:
        """Close the hop."""
        self._states.pop(hop, None)

    def failure(self, hop: Hashable) -> None:
        """Count a failure; open the hop when the threshold is reached."""
        state = self._states.setdefault(hop, _State())
        state.failures += 1
        if state.failures >= self._threshold:
            state.open_until = self._clock() + self._cooldown

    def trip(self, hop: Hashable, seconds: float | None = None) -> None:
        """Open the hop now for `seconds` (default: the cooldown)."""
        state = self._states.setdefault(hop, _State())
        state.failures = max(state.failures, self._threshold)
        state.open_until = max(state.open_until, self._clock() + (self._cooldown if seconds is None else seconds))

    def snapshot(self) -> dict[Hashable, tuple[int, float]]:
        """Each hop with failures on record: its consecutive failures and the seconds left of its cooldown (0 when
        closed or half-open). For operators' views; routing uses `available`."""
        now = self._clock()
        return {hop: (state.failures, max(0.0, state.open_until - now)) for hop, state in self._states.items()}

    def open_hops(self) -> list[Hashable]:
        """Hops currently cooling down."""
        now = self._clock()
        return [hop for hop, state in self._states.items() if state.open_until > now]

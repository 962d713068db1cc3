"""One deadline for a loop that yields: applied to each of the loop's own waits, never across a `yield`.

While an async generator is suspended at a `yield`, the code running is its consumer's, in the consumer's task. A
cancel scope left open across the `yield` therefore fires into whatever the consumer awaits (the door relaying
the stream dies without its last chunk), and anyio cannot unwind it cleanly. So Agent Mode's streaming loop wraps
each of its own awaits (a model turn's next chunk, a batch of tool runs) in a scope of its own, opened and closed
before the next `yield`, all ending at one absolute time. The consumer's time between chunks is never cut; when
the loop next waits after the deadline, it stops there and says so.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar, TypeVarTuple

import anyio

__all__ = ["EXPIRED", "Deadline", "Expired"]

T = TypeVar("T")
Args = TypeVarTuple("Args")


class Expired(enum.Enum):
    """The type of `EXPIRED`, what `Deadline.within` returns when the deadline came first."""

    EXPIRED = "expired"


EXPIRED = Expired.EXPIRED


class Deadline:
    """An absolute time (the event loop's clock) by which every wait run through `within` must end."""

    def __init__(self, seconds: float) -> None:
        self.at = anyio.current_time() + seconds

    @property
    def passed(self) -> bool:
        return anyio.current_time() >= self.at

    async def within(self, wait: Callable[[*Args], Awaitable[T]], *args: *Args) -> T | Literal[Expired.EXPIRED]:
        """`await wait(*args)`, cancelled at the deadline (then `EXPIRED`); not started once it has passed."""
        if self.passed:
            return EXPIRED
        with anyio.CancelScope(deadline=self.at):
            return await wait(*args)
        return EXPIRED

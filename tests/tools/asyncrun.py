"""`run_async`: run a coroutine function from a synchronous test (a Hypothesis property, whose examples each need an
event loop of their own) in a thread of its own.

`anyio.run` refuses to start when its thread seems to run an event loop already; the test runner's main thread can
look so after another test's loop (xdist runs many test files in one process), so the loop gets a fresh thread.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def run_async(func: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
    """`anyio.run(func, *args)` in a new thread; its result, or its exception raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(anyio.run(func, *args))
        except BaseException as exc:  # handed to the caller's thread as it is
            failure.append(exc)

    thread = threading.Thread(target=target, name="run_async")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]

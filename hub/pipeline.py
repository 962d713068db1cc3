"""The one pipeline: stages `(call, call_next) -> Outcome` composed once, outermost first, around an executor.

`audit(authn(authz(limits(guardrails(executor)))))`: each stage may deny by raising a `HubError`, may pass an
adjusted copy of the call on, and pairs whatever it does before `call_next` with what it does after in
`try/finally`. The composition happens at start-up; a call costs one call per stage (each stage is bound to
its `call_next` with `functools.partial`, so no wrapper coroutine sits between two stages).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from hub.call import Call, Outcome

Handler = Callable[[Call], Awaitable[Outcome]]
"""A composed pipeline, or the executor at its end."""


class Stage(Protocol):
    """One governance stage."""

    async def __call__(self, call: Call, call_next: Handler) -> Outcome: ...


def compose(stages: Sequence[Stage], executor: Handler) -> Handler:
    """Wrap `executor` in `stages`, the first stage outermost."""
    handler = executor
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, call_next: Handler) -> Handler:
    return partial(stage.__call__, call_next=call_next)

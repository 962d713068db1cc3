"""The outcome of one program run: ``RunOk | RunError``, tagged by ``status``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ErrorKind = Literal[
    "syntax",  # the program does not parse
    "rejected",  # the pre-check refused it (dunder access, eval, ...)
    "exception",  # the program raised and did not catch it (ToolError included)
    "timeout",  # wall-time limit (guest time) or total_timeout (tools included)
    "memory",  # memory cap
    "fuel",  # fuel budget
    "recursion",  # wasm stack exhausted
    "output_limit",  # printed too much, `result` too large, or tool calls sending too much
    "result",  # `result` is not JSON-serializable
    "trap",  # the guest touched a capability it does not have, or another wasm trap
    "protocol",  # the guest sent the host something malformed (a program that rewrote the guest's own code)
    "crashed",  # the worker process died during the run
    "unavailable",  # no worker could take the run
]


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call the program made, as the host saw it."""

    name: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RunOk:
    """The program finished: what it printed and the JSON value of its ``result`` variable (None if unset)."""

    stdout: str
    result: Any
    tool_calls: tuple[ToolCallRecord, ...] = ()
    duration: float = 0.0
    """Seconds for the whole run, as the host measured it."""
    guest_time: float = 0.0
    """Seconds the guest itself ran (the part ``wall_time`` bounds)."""
    tool_time: float = 0.0
    fuel_used: int | None = None
    status: Literal["ok"] = "ok"


@dataclass(frozen=True, slots=True)
class RunError:
    """The program failed; ``message`` is written for the model to act on."""

    kind: ErrorKind
    message: str
    stdout: str = ""
    line: int | None = None
    traceback: str = ""
    tool_calls: tuple[ToolCallRecord, ...] = ()
    duration: float = 0.0
    guest_time: float = 0.0
    tool_time: float = 0.0
    fuel_used: int | None = None
    status: Literal["error"] = "error"


RunResult = RunOk | RunError

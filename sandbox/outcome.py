"""The host's reading of a run's DONE frame: every text it returns is capped by the run's limits.

The guest applies the caps itself, so a program gets a clear error early, but the program runs inside the guest and
can rewrite what enforces them: the caps live in Python state the program reaches, and with enough introspection it
can replace the guest's encoder. So the host checks the outcome again. Stdout longer than ``max_output_bytes`` and a
``result`` larger than ``max_result_bytes`` are ``output_limit`` errors, the error message and the traceback are cut
to ``max_error_bytes`` each, and anything that is not the guest's outcome shape is a ``protocol`` error.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from sandbox.bridge import CallBudget
from sandbox.limits import SandboxLimits
from sandbox.result import ErrorKind, RunError, RunOk, RunResult

GUEST_ERROR_KINDS: frozenset[str] = frozenset({"syntax", "exception", "memory", "output_limit", "result"})
"""The error kinds the guest itself reports; any other kind in its outcome is forged."""
TRAP_KINDS: frozenset[str] = frozenset({"timeout", "fuel", "recursion", "memory", "trap"})
"""The kinds the worker gives a trap (``sandbox.engine.classify_trap``)."""
PROTOCOL = "the program broke the sandbox protocol"


class _Malformed(Exception):
    """The DONE frame or the guest's outcome in it does not have the expected shape."""


def cut(text: str, cap: int) -> str:
    """The first ``cap`` bytes of ``text`` (UTF-8), ending on a character boundary."""
    data = text.encode()
    if len(data) <= cap:
        return text
    return data[:cap].decode(errors="ignore")


def clip(text: str, cap: int) -> str:
    """``text`` in at most ``cap`` bytes (UTF-8): its head and its tail around a note saying how much it was."""
    data = text.encode()
    if len(data) <= cap:
        return text
    note = f" [... {len(data)} bytes in all, cut to fit {cap} ...] "
    room = cap - len(note)
    if room < 2:
        return cut(text, cap)
    head, tail = room - room // 2, room // 2
    return data[:head].decode(errors="ignore") + note + data[len(data) - tail :].decode(errors="ignore")


def finish(outcome: bytes | RunError, limits: SandboxLimits, budget: CallBudget, duration: float) -> RunResult:
    """The result of a run: from its DONE frame's payload, or the error the host ended it with."""
    common: dict[str, Any] = {"tool_calls": tuple(budget.records), "duration": duration, "tool_time": budget.tool_time}
    if isinstance(outcome, RunError):
        return RunError(outcome.kind, outcome.message, **common)
    try:
        return _read(outcome, limits, common)
    except (_Malformed, orjson.JSONDecodeError) as exc:
        return RunError("protocol", f"{PROTOCOL}: its outcome is malformed ({exc})", **common)


def _read(payload: bytes, limits: SandboxLimits, common: dict[str, Any]) -> RunResult:
    done = _object(orjson.loads(payload))
    guest_time, fuel_used = done.get("guest_time"), done.get("fuel_used")
    if not isinstance(guest_time, float | int) or not (fuel_used is None or isinstance(fuel_used, int)):
        raise _Malformed("timings")
    common = {**common, "guest_time": float(guest_time), "fuel_used": fuel_used}
    trap = done.get("trap_kind")
    if trap is not None:
        kind = cast("ErrorKind", trap) if trap in TRAP_KINDS else "trap"
        return RunError(kind, clip(_text(done, "trap_message"), limits.max_error_bytes), **common)
    body = _object(orjson.loads(_text(done, "outcome")))
    status = body.get("status")
    if status == "ok":
        return _ok(body, limits, common)
    if status != "error":
        raise _Malformed("status")
    kind = body.get("kind")
    if kind not in GUEST_ERROR_KINDS:
        raise _Malformed(f"error kind {kind!r}")
    line = body.get("line")
    if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
        raise _Malformed("line")
    return RunError(
        cast("ErrorKind", kind),
        clip(_text(body, "message"), limits.max_error_bytes),
        stdout=cut(_text(body, "stdout", ""), limits.max_output_bytes),
        line=line,
        traceback=clip(_text(body, "traceback", ""), limits.max_error_bytes),
        **common,
    )


def _ok(body: dict[str, Any], limits: SandboxLimits, common: dict[str, Any]) -> RunResult:
    stdout = _text(body, "stdout")
    result_json = _text(body, "result_json")
    if len(stdout.encode()) > limits.max_output_bytes:
        message = f"the program printed more than {limits.max_output_bytes} bytes"
        return RunError("output_limit", message, stdout=cut(stdout, limits.max_output_bytes), **common)
    size = len(result_json.encode())
    if size > limits.max_result_bytes:
        message = f"`result` is {size} bytes as JSON, over the {limits.max_result_bytes}-byte cap; return less data"
        return RunError("output_limit", message, stdout=stdout, **common)
    return RunOk(stdout, orjson.loads(result_json), **common)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed("not an object")
    return cast("dict[str, Any]", value)


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise _Malformed(f"{key} is not a string")
    return value

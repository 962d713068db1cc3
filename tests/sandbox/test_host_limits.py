"""The host enforces the output caps: whatever a program does to the guest, what comes back to the hub is bounded.

The guest keeps its caps in Python state the program can reach (``tools._run`` passes the pre-check; with the
pre-check off, ``print.__self__`` and the guest module's globals are reachable too). These programs rewrite that
state, write the output buffer directly, call the host import directly or forge the guest's outcome, and the host
still caps every text it returns, refuses oversized frames before reading them and reports malformed outcomes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from sandbox import RunError, RunOk, RunResult, SandboxLimits, SandboxPool
from sandbox.bridge import CallBudget
from sandbox.outcome import clip, finish
from sandbox.protocol import (
    HEADER,
    FrameTooLarge,
    Kind,
    ProtocolError,
    decode_calls,
    parse_header,
    worker_frame_limits,
)

from .conftest import RecordingCaller

pytestmark = pytest.mark.anyio

# Two ways into the guest's run state: one the pre-check lets through, one only a program without it can use.
ROUTES = {
    "tools._run": ("tools._run", True),
    "print.__self__": ("print.__self__", False),
}
GUEST_GLOBALS = "g = type(tools).__init__.__globals__\n"


def forge_outcome(text: str) -> str:
    """A program that makes the guest hand the host ``text`` (a Python expression) as its outcome.

    It replaces the ``json`` module the guest encodes its outcome with, once the program has ended.
    """
    return (
        GUEST_GLOBALS + "class Forged:\n"
        "    def dumps(self, *args, **kwargs):\n"
        f"        return {text}\n"
        "g['json'] = Forged()\n"
    )


def lift_caps(route: str) -> str:
    state, _ = ROUTES[route]
    return (
        f"state = {state}\n"
        "state.max_output = state.max_result = state.max_error = state.max_args = state.max_calls = 10**12\n"
    )


def returned_bytes(result: RunResult) -> int:
    """The size of everything the host hands back for a run."""
    size = len(result.stdout.encode())
    if isinstance(result, RunError):
        return size + len(result.message.encode()) + len(result.traceback.encode())
    return size + len(orjson.dumps(result.result))


async def run(pool: SandboxPool, code: str, *, check: bool = True, **limits: Any) -> RunResult:
    return await pool.run(code, RecordingCaller(), limits=SandboxLimits(**limits), check=check)


@pytest.fixture(scope="module")
async def solo(anyio_backend: str) -> AsyncIterator[SandboxPool]:
    """A pool of one worker, to tell which worker a run was on."""
    async with SandboxPool(size=1) as single:
        yield single


async def serving_pid(pool: SandboxPool) -> int:
    """The pid of the one worker of `pool`, once it serves runs."""
    healthy = await run(pool, "result = 6 * 7")
    assert isinstance(healthy, RunOk) and healthy.result == 42
    (pid,) = pool.worker_pids
    return pid


async def run_and_replace(pool: SandboxPool, code: str, caller: RecordingCaller, **options: Any) -> RunError:
    """Run `code` on the one worker of `pool`; the run must end with that worker killed and replaced."""
    pid = await serving_pid(pool)
    result = await pool.run(code, caller, **options)
    assert isinstance(result, RunError)
    assert pid not in pool.worker_pids
    assert await serving_pid(pool) != pid
    return result


# -- error text -------------------------------------------------------------------------------------------------------


async def test_a_huge_error_message_comes_back_cut_to_max_error_bytes(pool: SandboxPool) -> None:
    result = await run(pool, "x = 1\nraise ValueError('E' * 5_000_000)")
    assert isinstance(result, RunError) and result.kind == "exception"
    assert result.message.startswith("ValueError: EEEE")
    assert len(result.message.encode()) <= 8 << 10
    assert result.traceback.startswith("Traceback (most recent call last):\n  line 2, in <module>")
    assert len(result.traceback.encode()) <= 8 << 10
    assert result.line == 2
    assert returned_bytes(result) <= 16 << 10
    assert SandboxLimits().max_error_bytes == 8 << 10


@pytest.mark.parametrize("route", ROUTES)
async def test_the_error_cap_holds_when_the_program_lifts_it(pool: SandboxPool, route: str) -> None:
    code = lift_caps(route) + "raise ValueError('E' * 1_000_000 + 'é')"
    result = await run(pool, code, check=ROUTES[route][1], max_error_bytes=2000)
    assert isinstance(result, RunError) and result.kind == "exception"
    assert result.message.startswith("ValueError: EEEE")
    assert len(result.message.encode()) <= 2000
    assert len(result.traceback.encode()) <= 2000
    assert returned_bytes(result) <= 4000


async def test_a_short_error_message_is_not_touched(pool: SandboxPool) -> None:
    result = await run(pool, "raise KeyError('missing')", max_error_bytes=100)
    assert isinstance(result, RunError)
    assert result.message == "KeyError: 'missing'"
    assert result.traceback.endswith("KeyError: 'missing'\n")


# -- stdout and result ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_the_output_cap_holds_when_the_program_lifts_it(pool: SandboxPool, route: str) -> None:
    code = lift_caps(route) + "print('x' * 200_000)\nresult = 1"
    result = await run(pool, code, check=ROUTES[route][1], max_output_bytes=10_000)
    assert isinstance(result, RunError) and result.kind == "output_limit"
    assert result.stdout == "x" * 10_000
    assert returned_bytes(result) <= 10_000 + (8 << 10)


async def test_the_output_cap_holds_when_the_program_fills_the_buffer_itself(pool: SandboxPool) -> None:
    code = "tools._run.chunks.append('é' * 100_000)\nresult = 1"
    result = await run(pool, code, max_output_bytes=10_001)
    assert isinstance(result, RunError) and result.kind == "output_limit"
    assert result.stdout == "é" * 5_000  # cut on a character boundary
    assert "10001 bytes" in result.message


async def test_the_output_cap_holds_for_a_failed_run_too(pool: SandboxPool) -> None:
    code = "tools._run.chunks.append('x' * 100_000)\nraise ValueError('late')"
    result = await run(pool, code, max_output_bytes=1000)
    assert isinstance(result, RunError) and result.kind == "exception"
    assert result.message == "ValueError: late"
    assert result.stdout == "x" * 1000


@pytest.mark.parametrize("route", ROUTES)
async def test_the_result_cap_holds_when_the_program_lifts_it(pool: SandboxPool, route: str) -> None:
    code = lift_caps(route) + "print('before')\nresult = 'x' * 200_000"
    result = await run(pool, code, check=ROUTES[route][1], max_result_bytes=100_000)
    assert isinstance(result, RunError) and result.kind == "output_limit"
    assert "`result` is 200002 bytes as JSON, over the 100000-byte cap" in result.message
    assert result.stdout == "before\n"
    assert returned_bytes(result) <= 1000


async def test_a_program_at_every_cap_gets_its_normal_outcome(solo: SandboxPool) -> None:
    # The worst case for the frame size: text that JSON escapes most, twice (guest outcome, then DONE frame).
    pid = await serving_pid(solo)
    code = "print('\\x01' * 9_999)\nresult = ['\"' * 1_000] * 40"
    result = await run(solo, code, max_output_bytes=10_000, max_result_bytes=100_000)
    assert isinstance(result, RunOk), result
    assert result.stdout == "\x01" * 9_999 + "\n"
    assert result.result == ['"' * 1_000] * 40
    failed = await run(solo, "raise ValueError('\\x01' * 100_000)", max_error_bytes=5_000)
    assert isinstance(failed, RunError) and failed.kind == "exception"
    assert solo.worker_pids == [pid]  # nothing was treated as an oversized frame


# -- the host's reading of a DONE frame, alone -------------------------------------------------------------------------


def done_frame(outcome: Any = None, **fields: Any) -> bytes:
    done = {"outcome": json.dumps(outcome), "trap_kind": None, "trap_message": "", "guest_time": 0.5, "fuel_used": None}
    return orjson.dumps({**done, **fields})


def read_done(payload: bytes, **limits: Any) -> RunResult:
    async def unused(name: str, arguments: dict[str, Any]) -> Any:
        raise AssertionError("no tool calls here")

    limits_ = SandboxLimits(**limits)
    return finish(payload, limits_, CallBudget(unused, limits_), 1.0)


def test_clip_keeps_head_and_tail_within_the_cap() -> None:
    text = "start " + "é" * 10_000 + " end"
    clipped = clip(text, 200)
    assert len(clipped.encode()) <= 200
    assert clipped.startswith("start éé") and clipped.endswith("éé end")
    assert "20010 bytes in all" in clipped
    assert clip(text, 10) == "start éé"  # no room for the note: the head only
    assert clip("short", 5) == "short"


def test_traps_are_reported_with_their_message_capped() -> None:
    trap = read_done(done_frame(trap_kind="timeout", trap_message="t" * 100), max_error_bytes=50)
    assert isinstance(trap, RunError) and trap.kind == "timeout"
    assert len(trap.message) <= 50 and trap.guest_time == 0.5
    forged = read_done(done_frame(trap_kind="unavailable", trap_message="x"))
    assert isinstance(forged, RunError) and forged.kind == "trap"


@pytest.mark.parametrize(
    "payload",
    [
        done_frame({"status": "error", "kind": "exception", "message": "m", "line": "3"}),
        done_frame({"status": "error", "kind": "exception", "message": "m", "line": True}),
        done_frame({"status": "ok", "stdout": "", "result_json": "1"}, guest_time="soon"),
        done_frame({"status": "ok", "stdout": "", "result_json": "1"}, fuel_used=1.5),
        b"[]",
    ],
)
def test_a_malformed_done_frame_is_a_protocol_error(payload: bytes) -> None:
    result = read_done(payload)
    assert isinstance(result, RunError) and result.kind == "protocol"


def test_calls_frames_must_be_lists_of_string_pairs() -> None:
    assert decode_calls(b'[["a", "{}"], ["b", "[]"]]') == [("a", "{}"), ("b", "[]")]
    for payload in (b"{", b"{}", b'["a"]', b'[["a"]]', b'[["a", {}]]', b'[[1, "{}"]]'):
        with pytest.raises(ProtocolError):
            decode_calls(payload)


# -- frames -----------------------------------------------------------------------------------------------------------


def test_a_frame_header_over_the_runs_limit_is_refused_before_its_payload() -> None:
    limits = worker_frame_limits(SandboxLimits())
    with pytest.raises(FrameTooLarge) as refused:
        parse_header(HEADER.pack(1 << 30, Kind.DONE), limits)
    assert (refused.value.kind, refused.value.length, refused.value.limit) == (Kind.DONE, 1 << 30, limits[Kind.DONE])
    assert parse_header(HEADER.pack(limits[Kind.DONE], Kind.DONE), limits) == (limits[Kind.DONE], Kind.DONE)
    with pytest.raises(ProtocolError, match="unexpected"):
        parse_header(HEADER.pack(10, Kind.RUN), limits)


def test_the_largest_legitimate_frames_fit_the_runs_limits() -> None:
    limits = SandboxLimits(
        max_output_bytes=3_000, max_result_bytes=5_000, max_error_bytes=700, max_tool_calls=7, max_tool_args_bytes=4_000
    )
    bounds = worker_frame_limits(limits)
    assert bounds[Kind.DONE] < 1 << 20 and bounds[Kind.CALLS] < 1 << 20  # not 1 GiB
    # A DONE frame as guest and worker encode it, with every text at its cap in the most-escaped characters.
    outcome = {
        "status": "error",
        "kind": "exception",
        "message": "\x01" * 700,
        "stdout": "\x01" * 3_000,
        "line": 10**9,
        "traceback": "\x01" * 700,
        "result_json": '"' * 5_000,
    }
    done = {
        "outcome": json.dumps(outcome, ensure_ascii=False),
        "trap_kind": None,
        "trap_message": "",
        "guest_time": 1e300,
        "tool_time": 1e300,
        "fuel_used": 1 << 62,
    }
    assert len(orjson.dumps(done)) <= bounds[Kind.DONE]
    # A CALLS frame: a batch of max_tool_calls calls whose names and arguments fill max_tool_args_bytes.
    calls = [["\x01" * (limits.max_tool_args_bytes // 7 - 2), "{}"] for _ in range(7)]
    assert sum(len(name) + len(args) for name, args in calls) <= limits.max_tool_args_bytes
    assert len(orjson.dumps(calls)) <= bounds[Kind.CALLS]


async def test_an_oversized_done_frame_kills_the_worker_before_the_host_reads_it(solo: SandboxPool) -> None:
    code = "tools._run.chunks.append('x' * 5_000_000)"
    limits = SandboxLimits(max_result_bytes=100_000)
    result = await run_and_replace(solo, code, RecordingCaller(), limits=limits)
    assert result.kind == "output_limit"
    assert "the program's outcome is" in result.message
    assert returned_bytes(result) < 1000


async def test_a_forged_huge_outcome_is_refused_from_its_header(solo: SandboxPool) -> None:
    code = forge_outcome("'x' * 20_000_000")
    result = await run_and_replace(solo, code, RecordingCaller(), check=False)
    assert result.kind == "output_limit"
    assert returned_bytes(result) < 1000


@pytest.mark.parametrize(
    "outcome",
    [
        "not json",
        '{"status": "ok"}',
        '{"status": "ok", "stdout": "", "result_json": "{"}',
        '{"status": "ok", "stdout": 5, "result_json": "1"}',
        '{"status": "error", "kind": "unavailable", "message": "forged", "stdout": ""}',
        '{"status": "error", "kind": "exception", "message": ["x"], "stdout": ""}',
        '{"status": "maybe"}',
        "[]",
    ],
)
async def test_a_malformed_outcome_is_a_protocol_error(pool: SandboxPool, outcome: str) -> None:
    code = forge_outcome(repr(outcome))
    result = await run(pool, code, check=False)
    assert isinstance(result, RunError) and result.kind == "protocol"
    assert "broke the sandbox protocol" in result.message


# -- tool calls -------------------------------------------------------------------------------------------------------


async def test_tool_arguments_over_the_cap_fail_inside_the_program(pool: SandboxPool) -> None:
    caller = RecordingCaller()
    code = (
        "try:\n    tools.call('t', {'x': 'y' * 300_000})\nexcept ToolError as e:\n    first = str(e)\n"
        "try:\n    tools.call_many([('t', {'x': 'y' * 60_000})] * 2)\nexcept ToolError as e:\n    second = str(e)\n"
        "result = [first, second, tools.call('t', {'x': 'y' * 50_000})['tool']]"
    )
    result = await pool.run(code, caller, limits=SandboxLimits(max_tool_args_bytes=100_000))
    assert isinstance(result, RunOk), result
    first, second, third = result.result
    assert first.startswith("t: arguments are 300010 bytes as JSON") and "100000-byte cap" in first
    assert second.startswith("call_many: arguments are 120020 bytes as JSON")
    assert third == "t"
    assert len(caller.calls) == 1


async def test_a_batch_larger_than_the_call_budget_fails_inside_the_program(pool: SandboxPool) -> None:
    caller = RecordingCaller()
    code = "try:\n    tools.call_many([('t', {})] * 5)\nexcept ToolError as e:\n    result = str(e)"
    result = await pool.run(code, caller, limits=SandboxLimits(max_tool_calls=3))
    assert isinstance(result, RunOk)
    assert result.result == "call_many: a batch of 5 calls is more than the 3 calls a run may make"
    assert caller.calls == []


@pytest.mark.parametrize("route", ROUTES)
async def test_the_argument_cap_holds_when_the_program_lifts_it(pool: SandboxPool, route: str) -> None:
    caller = RecordingCaller()
    code = lift_caps(route) + "tools.call('t', {'x': 'y' * 300_000})"
    limits = SandboxLimits(max_tool_args_bytes=100_000)
    result = await pool.run(code, caller, limits=limits, check=ROUTES[route][1])
    assert isinstance(result, RunError) and result.kind == "output_limit"
    assert "tool call arguments" in result.message
    assert caller.calls == []


async def test_a_direct_host_call_cannot_send_a_huge_frame(solo: SandboxPool) -> None:
    caller = RecordingCaller()
    code = GUEST_GLOBALS + "g['_host'].call('t', '\"' + 'y' * 20_000_000 + '\"')"
    limits = SandboxLimits(max_tool_args_bytes=100_000)
    result = await run_and_replace(solo, code, caller, limits=limits, check=False)
    assert result.kind == "output_limit"
    assert "tool call arguments" in result.message
    assert caller.calls == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_batch_over_the_call_budget_is_refused_by_the_host(pool: SandboxPool, route: str) -> None:
    caller = RecordingCaller()
    code = lift_caps(route) + "tools.call_many([('t', {})] * 100_000)"
    result = await pool.run(code, caller, limits=SandboxLimits(max_tool_calls=3), check=ROUTES[route][1])
    assert isinstance(result, RunError) and result.kind == "output_limit"
    assert "100000 tool calls in one batch" in result.message
    assert caller.calls == [] and result.tool_calls == ()

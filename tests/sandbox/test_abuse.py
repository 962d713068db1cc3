"""Escape and abuse: each attempt ends in a clean error and the host keeps serving runs."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest

from sandbox import RunError, RunOk, SandboxLimits, SandboxPool, ToolCallError

from .conftest import RecordingCaller

pytestmark = pytest.mark.anyio


async def assert_healthy(pool: SandboxPool) -> None:
    after = await pool.run("result = 6 * 7", RecordingCaller())
    assert isinstance(after, RunOk) and after.result == 42


async def run_unchecked(pool: SandboxPool, code: str, **limits: Any) -> RunError:
    result = await pool.run(code, RecordingCaller(), limits=SandboxLimits(**limits), check=False)
    assert isinstance(result, RunError), result
    return result


async def test_infinite_loop_hits_the_wall_time_limit(pool: SandboxPool) -> None:
    with anyio.fail_after(10):
        result = await run_unchecked(pool, "while True:\n    pass", wall_time=0.5)
    assert result.kind == "timeout"
    assert 0.4 < result.guest_time < 3
    await assert_healthy(pool)


async def test_memory_bomb_raises_memory_error(pool: SandboxPool) -> None:
    result = await run_unchecked(
        pool, "chunks = []\nwhile True:\n    chunks.append('x' * 10**6)", memory_bytes=64 << 20
    )
    assert result.kind == "memory"
    assert result.line == 3
    await assert_healthy(pool)


async def test_huge_output_is_cut_at_the_cap(pool: SandboxPool) -> None:
    result = await run_unchecked(pool, "while True:\n    print('x' * 1000)", max_output_bytes=10_000)
    assert result.kind == "output_limit"
    assert len(result.stdout) == 10_000
    caught = await run_unchecked(
        pool, "try:\n    print('y' * 50_000)\nexcept Exception:\n    pass", max_output_bytes=100
    )
    assert caught.kind == "output_limit"  # `except Exception` cannot swallow it


async def test_huge_result_is_refused(pool: SandboxPool) -> None:
    result = await run_unchecked(pool, "result = 'x' * 200_000", max_result_bytes=100_000)
    assert result.kind == "output_limit"
    assert "result" in result.message


async def test_deep_recursion_is_a_recursion_error(pool: SandboxPool) -> None:
    result = await run_unchecked(pool, "def f(n):\n    return f(n + 1)\nf(0)")
    assert result.kind in ("exception", "recursion")
    assert "Recursion" in result.message or result.kind == "recursion"
    await assert_healthy(pool)


@pytest.mark.parametrize(
    "code",
    [
        "open('/etc/passwd').read()",
        "import os\nos.listdir('/')",
        "import io\nio.open('/etc/passwd')",
        "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'FileIO'][0]('/etc/passwd').read()",
    ],
)
async def test_files_cannot_be_read(pool: SandboxPool, code: str) -> None:
    result = await run_unchecked(pool, code)
    assert result.kind in ("exception", "trap")
    assert "root:" not in result.stdout + result.message
    await assert_healthy(pool)


async def test_sockets_cannot_be_opened(pool: SandboxPool) -> None:
    accepted = 0

    async def handle(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        for code in (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}))",
            f"import _socket\n_socket.socket().connect(('127.0.0.1', {port}))",
            f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/')",
        ):
            result = await run_unchecked(pool, code)
            assert result.kind in ("exception", "trap")
        group.cancel_scope.cancel()
    assert accepted == 0


@pytest.mark.parametrize("module", ["os", "sys", "subprocess", "ctypes", "importlib", "asyncio.subprocess"])
async def test_modules_outside_the_allowlist_cannot_be_imported(pool: SandboxPool, module: str) -> None:
    result = await run_unchecked(pool, f"import {module}")
    assert result.kind == "exception"
    assert "not available in the sandbox" in result.message
    rejected = await pool.run(f"import {module}", RecordingCaller())
    assert isinstance(rejected, RunError) and rejected.kind == "rejected"


async def test_refused_tool_reaches_the_program_as_tool_error(pool: SandboxPool) -> None:
    result = await pool.run("tools.call('forbidden', {})", RecordingCaller())
    assert isinstance(result, RunError)
    assert result.kind == "exception"
    assert "ToolError: forbidden: not permitted for this key" in result.message


async def test_tool_that_never_returns_times_out_on_the_host(pool: SandboxPool) -> None:
    never = anyio.Event()

    async def hang(name: str, arguments: dict[str, Any]) -> Any:
        await never.wait()

    with anyio.fail_after(10):
        result = await pool.run("tools.call('hang', {})", hang, limits=SandboxLimits(tool_timeout=0.3))
    assert isinstance(result, RunError)
    assert "timed out after 0.3 s" in result.message
    await assert_healthy(pool)


async def test_tool_time_does_not_count_against_wall_time(pool: SandboxPool) -> None:
    async def slow(name: str, arguments: dict[str, Any]) -> Any:
        await anyio.sleep(0.4)
        return 1

    limits = SandboxLimits(wall_time=0.5, tool_timeout=2)
    result = await pool.run("result = sum(tools.call('slow', {}) for _ in range(3))", slow, limits=limits)
    assert isinstance(result, RunOk), result
    assert result.result == 3
    assert result.tool_time >= 1.2


async def test_total_timeout_kills_the_worker_and_a_replacement_serves(pool: SandboxPool) -> None:
    never = anyio.Event()

    async def hang(name: str, arguments: dict[str, Any]) -> Any:
        await never.wait()

    limits = SandboxLimits(tool_timeout=30, total_timeout=0.5)
    with anyio.fail_after(10):
        result = await pool.run("tools.call('hang', {})", hang, limits=limits)
    assert isinstance(result, RunError) and result.kind == "timeout"
    with anyio.fail_after(20):
        await assert_healthy(pool)
        await assert_healthy(pool)


async def test_tool_result_over_the_cap_is_refused(pool: SandboxPool) -> None:
    async def big(name: str, arguments: dict[str, Any]) -> Any:
        return "x" * (50 << 20)

    code = "try:\n    tools.call('big', {})\nexcept ToolError as e:\n    result = str(e)"
    result = await pool.run(code, big)
    assert isinstance(result, RunOk)
    assert "over the 1048576-byte cap" in result.result
    await assert_healthy(pool)


async def test_tool_call_budget(pool: SandboxPool) -> None:
    caller = RecordingCaller()
    code = (
        "ok = 0\nfor i in range(5):\n    try:\n        tools.call('t', {})\n        ok += 1\n"
        "    except ToolError as e:\n        last = str(e)\nresult = [ok, last]"
    )
    result = await pool.run(code, caller, limits=SandboxLimits(max_tool_calls=3))
    assert isinstance(result, RunOk)
    assert result.result[0] == 3
    assert "budget exhausted" in result.result[1]
    assert len(caller.calls) == 3


async def test_unexpected_caller_failure_is_hidden_from_the_program(pool: SandboxPool) -> None:
    async def broken(name: str, arguments: dict[str, Any]) -> Any:
        raise RuntimeError("database password is hunter2")

    result = await pool.run("tools.call('x', {})", broken)
    assert isinstance(result, RunError)
    assert "internal error" in result.message and "hunter2" not in result.message


async def test_tool_call_error_subclass(pool: SandboxPool) -> None:
    class Denied(ToolCallError):
        pass

    async def deny(name: str, arguments: dict[str, Any]) -> Any:
        raise Denied("denied by policy")

    result = await pool.run("tools.call('x', {})", deny)
    assert isinstance(result, RunError) and "denied by policy" in result.message


async def test_many_concurrent_runs_get_their_own_results(pool: SandboxPool) -> None:
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        results[i] = await pool.run(f"x = {i}\nresult = tools.call('echo', {{'i': x}})", RecordingCaller())

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(one, i)
    for i, result in results.items():
        assert isinstance(result, RunOk)
        assert result.result == {"tool": "echo", "arguments": {"i": i}}


async def test_killed_worker_is_replaced_and_the_run_reports_it() -> None:
    started = anyio.Event()

    async def signal_start(name: str, arguments: dict[str, Any]) -> Any:
        started.set()
        return None

    async with SandboxPool(size=1) as small:
        (pid,) = small.worker_pids

        async def kill_when_started() -> None:
            with anyio.fail_after(10):
                await started.wait()
            os.kill(pid, signal.SIGKILL)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(kill_when_started)
                result = await small.run("tools.call('start', {})\nwhile True:\n    pass", signal_start)
            assert isinstance(result, RunError)
            assert result.kind == "crashed"
            after = await small.run("result = 1", RecordingCaller())
        assert isinstance(after, RunOk)
        assert small.worker_pids and small.worker_pids[0] != pid


async def test_fuel_limit() -> None:
    async with SandboxPool(size=1, fuel=True) as metered:
        result = await metered.run("while True:\n    pass", RecordingCaller(), limits=SandboxLimits(fuel=50_000_000))
        assert isinstance(result, RunError) and result.kind == "fuel"
        ok = await metered.run("result = sum(range(100))", RecordingCaller(), limits=SandboxLimits(fuel=50_000_000))
        assert isinstance(ok, RunOk) and ok.fuel_used is not None and 0 < ok.fuel_used < 50_000_000

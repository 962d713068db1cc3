"""A counter server that is gone, restarted or silent: every operation fails with `CountersUnavailable` (as
`RedisCounters` does when Redis is down), which the limiter passes on and the limits stage turns into a refusal;
a server that comes back is used again without restarting the worker."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from hub.call import Call, Outcome, Principal
from hub.errors import Internal
from hub.governance import CountersUnavailable, Limiter, ToolPricing, Usage
from hub.governance.config import RateLimitConfig
from hub.governance.counters import Slot, SlotValue
from hub.governance.keys import VirtualKey
from hub.stages.limits import LimitsStage
from hub.store.counters import InMemoryCounters
from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters

pytestmark = pytest.mark.anyio

SLOT = Slot("k", 10, 1, 60.0)


async def test_no_server_at_the_path_is_a_clear_error_on_every_operation(socket_dir: Path) -> None:
    path = str(socket_dir / "absent.sock")
    counters = SocketCounters(path)
    try:
        with pytest.raises(CountersUnavailable, match=f"counter server at {path} is unreachable"):
            await counters.reserve([SLOT], hold_id="h", now=0.0, lease=60.0)
        with pytest.raises(CountersUnavailable, match="unreachable"):
            await counters.settle([SLOT], hold_id="h", now=0.0)
        with pytest.raises(CountersUnavailable, match="unreachable"):
            await counters.read(["k"], now=0.0)
        with pytest.raises(CountersUnavailable, match="unreachable"):
            await counters.reset(["k"], now=0.0)
    finally:
        await counters.aclose()


async def test_a_server_that_stopped_is_a_clear_error_and_one_that_restarted_is_used_again(socket_dir: Path) -> None:
    path = str(socket_dir / "c.sock")
    counters = SocketCounters(path)
    try:
        with CounterServer(path):
            assert (await counters.reserve([SLOT], hold_id="h", now=0.0, lease=60.0)).granted
        assert not Path(path).exists()
        with pytest.raises(CountersUnavailable, match="unreachable"):
            await counters.read(["k"], now=0.0)
        with CounterServer(path):  # a new server (a restarted supervisor): fresh counters, same path
            assert await counters.read(["k"], now=0.0) == [SlotValue(0, 0)]
    finally:
        await counters.aclose()


async def test_a_server_that_does_not_answer_times_out_with_a_clear_error(socket_dir: Path) -> None:
    path = str(socket_dir / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(path)
        silent.listen()  # connections queue in the backlog; nothing ever reads or answers
        counters = SocketCounters(path, timeout=0.2)
        try:
            with pytest.raises(CountersUnavailable, match=r"did not answer reserve within 0\.2 s"):
                await counters.reserve([SLOT], hold_id="h", now=0.0, lease=60.0)
        finally:
            await counters.aclose()


async def test_closed_counters_refuse_further_calls(server: CounterServer) -> None:
    counters = SocketCounters(server.path)
    assert await counters.read(["k"], now=0.0) == [SlotValue(0, 0)]
    await counters.aclose()
    with pytest.raises(CountersUnavailable, match="closed"):
        await counters.read(["k"], now=0.0)


async def test_the_limits_stage_refuses_a_call_when_the_counter_server_is_gone(socket_dir: Path) -> None:
    counters = SocketCounters(str(socket_dir / "absent.sock"))
    limiter = Limiter(counters)
    limiter.set_key("k1", rate_limit=RateLimitConfig(requests=5, period="1m"))
    with pytest.raises(CountersUnavailable):
        await limiter.reserve("k1", Usage(requests=1))
    ran: list[Call] = []

    async def executor(call: Call) -> Outcome:
        ran.append(call)
        return Outcome(value="ran")

    principal = Principal(VirtualKey(id="k1", name="alice", tools=("*",)))
    call = Call(door="rest", operation="mcp.tool", target="s__t", payload={}, principal=principal)
    try:
        with pytest.raises(Internal, match="limits could not be checked"):
            await LimitsStage(limiter, ToolPricing({}))(call, executor)
    finally:
        await counters.aclose()
    assert ran == []


class _FailingCounters(InMemoryCounters):
    """Counters whose read and settle fail, as a bug in the server's counters would."""

    async def read(self, keys: Sequence[str], *, now: float) -> list[SlotValue]:
        raise RuntimeError("read exploded")

    async def settle(self, slots: Sequence[Slot], *, hold_id: str, now: float) -> None:
        raise RuntimeError("settle exploded")


async def test_an_operation_that_fails_in_the_server_is_reported_and_the_connection_goes_on(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CounterServer(str(socket_dir / "c.sock"), counters=_FailingCounters()) as server:
        counters = SocketCounters(server.path)
        try:
            with pytest.raises(CountersUnavailable, match="failed read: RuntimeError: read exploded"):
                await counters.read(["k"], now=0.0)
            await counters.settle([SLOT], hold_id="h", now=0.0)  # not waited for: its failure is logged
            assert (await counters.reserve([SLOT], hold_id="h2", now=0.0, lease=60.0)).granted
        finally:
            await counters.aclose()
    assert "the counter server failed a settle: RuntimeError: settle exploded" in caplog.text
    assert "counter server: operation 3 failed" in caplog.text  # the server logs it with its traceback

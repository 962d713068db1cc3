"""Several worker processes on one counter server: a limit admits exactly `limit` between all of them, a worker
that restarts finds the usage where it was (the counters live in the server, nothing is seeded again), and the
reservation of a worker killed mid-call is released when its lease ends."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from hub.governance.counters import Slot, SlotValue
from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters
from tests.tools import REPO_ROOT
from tests.tools.patience import PATIENCE


def _workers(*argvs: list[str]) -> list[str]:
    """Run one worker process per argv at the same time; their outputs, in order. Each is stopped by PID."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.shared_counters.worker", *argv],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    outputs: list[str] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=3 * PATIENCE)
            assert proc.returncode == 0, err
            outputs.append(out.strip())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


def test_four_processes_reserving_at_once_are_granted_exactly_the_limit_between_them(server: CounterServer) -> None:
    outputs = _workers(*[["hammer", server.path, "shared", "150", "100"] for _ in range(4)])
    granted = [int(out) for out in outputs]
    assert sum(granted) == 150, granted


def test_processes_spending_one_budget_never_overspend_it(server: CounterServer) -> None:
    outputs = _workers(*[["spend", server.path, "3"] for _ in range(3)])
    admitted = [int(out.split()[0]) for out in outputs]
    assert sum(admitted) == 4  # 1 USD at 0.25 each, whichever process made the calls


def test_a_worker_that_restarts_finds_the_spent_budget_and_adds_nothing_again(server: CounterServer) -> None:
    (first,) = _workers(["spend", server.path, "3"])
    assert first.split() == ["3", "0.75", "0.0"]
    (second,) = _workers(["spend", server.path, "3"])  # the same worker, started again after it exited
    assert second.split() == ["1", "1.0", "0.0"]  # one call left in the budget; usage is what was settled, once
    (third,) = _workers(["spend", server.path, "2"])
    assert third.split() == ["0", "1.0", "0.0"]


@pytest.mark.anyio
async def test_the_reservation_of_a_worker_killed_mid_call_is_released_when_its_lease_ends(
    server: CounterServer,
) -> None:
    argv = [sys.executable, "-m", "tests.shared_counters.worker", "hold", server.path, "crash", "10", "30"]
    proc = await anyio.open_process(argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        said = b""
        with anyio.fail_after(PATIENCE):
            while not said.endswith(b"\n"):  # the line, or end of output if the process exits
                try:
                    said += await proc.stdout.receive()
                except anyio.EndOfStream:
                    break
        assert said == b"held\n"
    finally:
        proc.kill()  # by PID, mid-call: its reservation is never settled
        await proc.wait()
        await proc.aclose()

    counters = SocketCounters(server.path)
    try:
        assert await counters.read(["crash"], now=29.9) == [SlotValue(0, 10)]  # held while the lease runs
        late = await counters.reserve([Slot("crash", 10, 1, 600.0)], hold_id="next", now=29.9, lease=30.0)
        assert not late.granted
        assert await counters.read(["crash"], now=30.0) == [SlotValue(0, 0)]  # the lease ended: released
        after = await counters.reserve([Slot("crash", 10, 10, 600.0)], hold_id="next", now=30.0, lease=30.0)
        assert after.granted
    finally:
        await counters.aclose()

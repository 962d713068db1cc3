"""One owner (a virtual key) cannot take every sandbox worker: its runs over `per_owner` wait for its own slot."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from sandbox import RunError, RunOk, RunResult, SandboxLimits, SandboxPool, ToolCatalog, execute_tool_code

from .conftest import RecordingCaller

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def fair(anyio_backend: str) -> AsyncIterator[SandboxPool]:
    async with SandboxPool(size=2, per_owner=1) as pool:
        yield pool


class GatedCaller:
    """A ToolCaller whose calls wait until `gate` is set; each call's arguments arrive on `arrivals` as it starts.
    Its stream is closed after the test that made it (`_close_callers`)."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.calls: list[dict[str, Any]] = []
        self._send, self.arrivals = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        _CALLERS.append(self)

    def close(self) -> None:
        self._send.close()
        self.arrivals.close()

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls.append(arguments)
        self._send.send_nowait(arguments)
        await self.gate.wait()
        return arguments["n"]


_CALLERS: list[GatedCaller] = []


@pytest.fixture(autouse=True)
def _close_callers() -> Iterator[None]:
    yield
    while _CALLERS:
        _CALLERS.pop().close()


class Runs:
    """Runs programs as tasks; `results` fills in as they finish. Leaving the `async with` waits for them all."""

    def __init__(self, pool: SandboxPool) -> None:
        self.pool = pool
        self.group = anyio.create_task_group()
        self.results: dict[str, RunResult] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def __aenter__(self) -> Runs:
        await self.group.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.group.__aexit__(*exc_info)

    async def start(self, name: str, owner: str | None, caller: Any, code: str = "", **options: Any) -> None:
        """Start run `name` (by default a program making one gated call) and return once it waits on something."""
        code = code or f"result = tools.call('slow', {{'n': {name!r}}})"
        scope = self.scopes[name] = anyio.CancelScope()

        async def run() -> None:
            with scope:
                self.results[name] = await self.pool.run(code, caller, owner=owner, **options)

        self.group.start_soon(run)
        await anyio.wait_all_tasks_blocked()


async def test_one_owner_cannot_hold_every_worker(fair: SandboxPool) -> None:
    a = GatedCaller()
    runs = Runs(fair)
    with anyio.fail_after(60):
        async with runs:
            await runs.start("a1", "A", a)
            assert await a.arrivals.receive() == {"n": "a1"}  # a1 holds a worker, blocked in its tool call
            await runs.start("a2", "A", a)
            assert fair.waiting == 1  # a2 waits for A's slot, not for a worker
            b = await fair.run("print(1)", RecordingCaller(), owner="B")
            assert isinstance(b, RunOk) and b.stdout == "1\n"
            assert a.calls == [{"n": "a1"}] and "a1" not in runs.results
            a.gate.set()  # a1 finishes; a2 takes A's slot and runs
    assert a.calls == [{"n": "a1"}, {"n": "a2"}]
    for name in ("a1", "a2"):
        result = runs.results[name]
        assert isinstance(result, RunOk) and result.result == name


async def test_runs_without_an_owner_may_use_every_worker(fair: SandboxPool) -> None:
    shared = GatedCaller()
    runs = Runs(fair)
    with anyio.fail_after(60):
        async with runs:
            await runs.start("x1", None, shared)
            await runs.start("x2", None, shared)
            assert {(await shared.arrivals.receive())["n"] for _ in range(2)} == {"x1", "x2"}
            shared.gate.set()
    assert all(isinstance(runs.results[name], RunOk) for name in ("x1", "x2"))


async def test_a_cancelled_run_waiting_for_its_owners_slot_gives_up_its_place(fair: SandboxPool) -> None:
    a = GatedCaller()
    runs = Runs(fair)
    with anyio.fail_after(60):
        async with runs:
            await runs.start("a1", "A", a)
            await a.arrivals.receive()
            await runs.start("a2", "A", a)
            assert fair.waiting == 1
            runs.scopes["a2"].cancel()
            await anyio.wait_all_tasks_blocked()
            assert fair.waiting == 0
            a.gate.set()
    assert "a2" not in runs.results and a.calls == [{"n": "a1"}]
    catalog = ToolCatalog.from_mcp({})
    after = await execute_tool_code(fair, "result = 3", RecordingCaller(), catalog=catalog, owner="A")
    assert isinstance(after, RunOk) and after.result == 3


async def test_a_cancelled_run_waiting_for_a_worker_gives_up_its_place(fair: SandboxPool) -> None:
    a, b = GatedCaller(), GatedCaller()
    runs = Runs(fair)
    with anyio.fail_after(60):
        async with runs:
            await runs.start("a1", "A", a)
            await runs.start("b1", "B", b)
            await a.arrivals.receive()
            await b.arrivals.receive()  # both workers are busy
            late = await fair.run("result = 1", RecordingCaller(), owner="C", acquire_timeout=0.2)
            assert isinstance(late, RunError) and late.kind == "unavailable"
            assert late.message == "no sandbox worker became free in time; try again"
            await runs.start("c1", "C", RecordingCaller(), "result = 'c1'")
            assert fair.waiting == 1
            runs.scopes["c1"].cancel()
            await anyio.wait_all_tasks_blocked()
            assert fair.waiting == 0
            a.gate.set()
            with anyio.fail_after(30):  # the worker a1 frees goes to d1, not to the cancelled c1
                d = await fair.run("result = 'd1'", RecordingCaller(), owner="D")
            assert isinstance(d, RunOk) and d.result == "d1"
            b.gate.set()
    assert "c1" not in runs.results
    assert len(fair.worker_pids) == 2


async def test_a_run_over_its_owners_limit_times_out_waiting_for_its_own_slot(fair: SandboxPool) -> None:
    a = GatedCaller()
    runs = Runs(fair)
    with anyio.fail_after(60):
        async with runs:
            await runs.start("a1", "A", a)
            await a.arrivals.receive()
            late = await fair.run("result = 2", RecordingCaller(), owner="A", acquire_timeout=0.2)
            assert isinstance(late, RunError) and late.kind == "unavailable"
            assert "1 run of this caller is already in progress" in late.message
            a.gate.set()
    assert isinstance(runs.results["a1"], RunOk)


async def test_many_runs_of_many_owners_all_complete(fair: SandboxPool) -> None:
    callers = {owner: RecordingCaller() for owner in ("A", "B", "C", None)}
    results: list[RunResult] = []

    async def one(owner: str | None, n: int) -> None:
        code = f"result = [tools.call('t', {{'n': {n}}})['arguments']['n'] for _ in range(3)]"
        results.append(await fair.run(code, callers[owner], owner=owner, limits=SandboxLimits(wall_time=5)))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for n in range(24):
                group.start_soon(one, ("A", "B", "C", None)[n % 4], n)
    assert len(results) == 24
    assert all(isinstance(r, RunOk) and r.result[0] == r.result[2] for r in results)
    assert {len(caller.calls) for caller in callers.values()} == {18}
    assert fair.waiting == 0


def test_per_owner_defaults_to_leaving_one_worker_for_the_others() -> None:
    assert SandboxPool(size=4).per_owner == 3
    assert SandboxPool(size=2).per_owner == 1
    assert SandboxPool(size=1).per_owner == 1
    assert SandboxPool(size=2, per_owner=2).per_owner == 2
    with pytest.raises(ValueError, match="per_owner"):
        SandboxPool(size=2, per_owner=0)

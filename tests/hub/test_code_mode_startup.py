"""The Code Mode sandbox at hub start-up: prepared in the background when a key or a server has Code Mode, waited
for by a program that comes early (within its deadline), and, when it cannot start, a clear error naming the cause,
logged once.

A start is held back with the real lock the guest build takes (`build.lock` in the cache directory): the build
subprocess blocks on it until the test hands it a compiled guest and lets go."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from sandbox.build import CACHE_ENV, ensure_artifact
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

PROGRAM = "result = fixture.add(a=2, b=3)['result']"


def _text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def _config(**key: Any) -> dict[str, Any]:
    return base_config(
        {"fixture": fixture_stdio()},
        keys=[
            {"name": "coder", "secret": ALICE, "tools": ["fixture__*"], "code_mode": True, **key},
            {"name": "plain", "secret": BOB, "tools": ["fixture__*"]},
        ],
    )


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(PATIENCE):
        while not condition():  # noqa: ASYNC110 - the hub exposes a counter, not an event
            await anyio.sleep(0.01)


@contextmanager
def _held_build(cache: Path) -> Iterator[Callable[[], None]]:
    """Hold the guest build's lock in `cache`; the callable puts a compiled guest there and lets the build go on."""
    compiled = ensure_artifact()  # the shared cache's, compiled for this machine
    directory = cache / "sandbox"
    directory.mkdir(parents=True)
    with (directory / "build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        released = False

        def release() -> None:
            nonlocal released
            for path in (compiled.path, compiled.path.with_suffix(".sha256")):
                shutil.copy(path, directory / path.name)
            fcntl.flock(lock, fcntl.LOCK_UN)
            released = True

        try:
            yield release
        finally:
            if not released:
                fcntl.flock(lock, fcntl.LOCK_UN)


async def test_a_hub_with_code_mode_prepares_the_sandbox_before_the_first_program(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_artifact()
    with caplog.at_level(logging.INFO, logger="hub.executors.code"):
        async with running_hub(_config(), tmp_path) as hub:
            codemode = hub.hub.codemode
            assert codemode.state in ("starting", "ready")  # started by the hub itself, no program asked for it
            with anyio.fail_after(PATIENCE):
                await codemode.wait_settled()
            assert codemode.state == "ready"
            async with mcp_client(hub.url(), ALICE) as client:
                run = await client.call_tool("execute_tool_code", {"code": PROGRAM})
    assert not run.is_error and "Result: 5" in _text(run)
    assert any(r.getMessage().startswith("Code Mode sandbox ready: 2 workers in ") for r in caplog.records)


async def test_a_hub_without_code_mode_starts_no_sandbox(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        await client.call_tool("fixture__echo", {"message": "hi"})
        assert hub.hub.codemode.state == "idle"


async def test_a_program_that_comes_while_the_guest_builds_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with _held_build(tmp_path / "cache") as release, caplog.at_level(logging.INFO, logger="sandbox.progress"):
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
        async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
            codemode = hub.hub.codemode
            assert codemode.state == "starting"
            other = await client.call_tool("fixture__echo", {"message": "served meanwhile"})  # another door works
            async with anyio.create_task_group() as tg:
                runs: list[types.CallToolResult] = []

                async def run() -> None:
                    runs.append(await client.call_tool("execute_tool_code", {"code": PROGRAM}))

                tg.start_soon(run)
                await _until(lambda: codemode.waiting == 1)
                assert codemode.state == "starting"
                release()
    assert not other.is_error
    assert not runs[0].is_error and "Result: 5" in _text(runs[0])
    progress = [r.getMessage() for r in caplog.records if r.name == "sandbox.progress"]
    assert progress[0] == "building the Code Mode sandbox guest (first start only)…"
    assert progress[1].startswith("the Code Mode sandbox guest was built by another process (")


async def test_a_program_waits_for_the_sandbox_no_longer_than_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _held_build(tmp_path / "cache"):
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
        config = _config(code_limits={"total_timeout": 0.5})
        async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
            with pytest.raises(MCPError) as late:
                await client.call_tool("execute_tool_code", {"code": PROGRAM})
            assert hub.hub.codemode.state == "starting"
    assert late.value.error.code == -32001  # UpstreamTimedOut
    assert late.value.error.message.startswith("Code Mode is still starting")
    assert "waited 0.5 s and did not run" in late.value.error.message


async def test_a_sandbox_that_cannot_start_is_a_clear_error_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    errors: list[MCPError] = []
    with caplog.at_level(logging.INFO, logger="hub.executors.code"):
        async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
            for _ in range(2):
                with pytest.raises(MCPError) as failed:
                    await client.call_tool("execute_tool_code", {"code": PROGRAM})
                errors.append(failed.value)
            assert hub.hub.codemode.state == "unavailable"
            other = await client.call_tool("fixture__echo", {"message": "the rest works"})
    cause = (
        f"the cache directory {blocker / 'sandbox'} is not writable (Not a directory); "
        f"set {CACHE_ENV} to a writable directory"
    )
    assert [(e.error.code, e.error.message) for e in errors] == [(-32603, f"Code Mode is unavailable: {cause}")] * 2
    logged = [r for r in caplog.records if "Code Mode is unavailable" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in logged] == [(logging.ERROR, f"Code Mode is unavailable: {cause}")]
    assert not other.is_error


def _sandbox_workers() -> list[int]:
    """Process ids of the sandbox workers this test process started (its children, as /proc lists them)."""
    found: list[int] = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            if b"sandbox.worker" in command:
                found.append(int(pid))
    return found


async def _resume_once_cancelled(scope: anyio.CancelScope, frozen: list[int]) -> None:
    """Let the frozen workers go on once the hub has been told to stop and has delivered that to its tasks."""
    with anyio.fail_after(PATIENCE):
        while not scope.cancel_called:  # noqa: ASYNC110 - the hub's stop is a cancellation, not an event
            await anyio.sleep(0.01)
    for _ in range(20):  # the cancellation reaches the hub's tasks over the next turns of the event loop
        await anyio.lowlevel.checkpoint()
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)


async def test_a_hub_that_stops_while_its_sandbox_workers_start_stops_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers start in a scope the hub's cancellation does not reach (a half-started pool must not be left
    # behind). The test holds the start back until the hub serves, freezes the workers before they are ready, stops
    # the hub, then lets them go on: the pool must still be closed once it is up, and the hub must stop.
    frozen: list[int] = []
    try:
        with _held_build(tmp_path / "cache") as release:
            monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
            async with anyio.create_task_group() as outside:
                async with running_hub(_config(), tmp_path) as hub:
                    release()
                    with anyio.fail_after(PATIENCE):
                        while len(frozen) < 2:  # the default pool: two workers
                            for pid in set(_sandbox_workers()) - set(frozen):
                                os.kill(pid, signal.SIGSTOP)
                                frozen.append(pid)
                            await anyio.sleep(0.001)
                    assert hub.hub.codemode.state == "starting"
                    outside.start_soon(_resume_once_cancelled, hub.hub.task_group.cancel_scope, frozen)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert _sandbox_workers() == []

"""The pool of sandbox worker processes, and the run API the hub calls.

    async with SandboxPool(size=2) as pool:          # in the hub's lifespan
        result = await pool.run(code, tool_caller, catalog=catalog, limits=SandboxLimits(wall_time=2))

Each worker (``sandbox.worker``) runs one program at a time in a fresh wasm instance. A worker that dies (a wasmtime
abort, a kill, the total timeout) is replaced in the background; the run it was serving reports ``crashed`` or
``timeout``. Tool calls travel back from the worker over its pipe and run here, in the caller's event loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from sandbox.bridge import CallBudget, ToolCaller
from sandbox.build import CACHE_ENV, GuestBuildError
from sandbox.catalog import EMPTY_CATALOG, ToolCatalog
from sandbox.limits import SandboxLimits
from sandbox.precheck import precheck
from sandbox.protocol import HEADER, Kind, ProtocolError, frame, parse_header
from sandbox.result import RunError, RunOk, RunResult

logger = logging.getLogger(__name__)
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class SandboxUnavailableError(RuntimeError):
    """The pool could not start (the guest failed to build, or no worker came up)."""


class _WorkerGone(Exception):
    """The worker's pipe closed in the middle of a run."""


@dataclass(eq=False)
class _Worker:
    process: anyio.abc.Process
    reader: BufferedByteReceiveStream
    alive: bool = True

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, kind: Kind, payload: bytes) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send(frame(kind, payload))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _WorkerGone from exc

    async def receive(self) -> tuple[Kind, bytes]:
        try:
            length, kind = parse_header(await self.reader.receive_exactly(HEADER.size))
            payload = await self.reader.receive_exactly(length) if length else b""
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise _WorkerGone from exc
        return kind, payload

    def kill(self) -> None:
        self.alive = False
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:  # pragma: no cover - already gone
                pass


class SandboxPool:
    """Worker processes that run Code Mode programs. Use as an async context manager (the hub's lifespan).

    Args:
        size: number of worker processes (each holds one compiled guest, about 60-70 MB); default 2.
        limits: default limits for runs that pass none.
        fuel: compile the guest with fuel metering, so ``SandboxLimits.fuel`` applies (slower to build).
        cache_dir: cache root (as ``AGENTHUB_CACHE_DIR``); the compiled guest goes to ``<cache_dir>/sandbox``.
            Default ``$AGENTHUB_CACHE_DIR``, else ``~/.cache/agenthub``.
        start_timeout: seconds to wait for the guest build (first use) and for workers to come up.
        check: run the RestrictedPython pre-check before each program.
    """

    def __init__(
        self,
        *,
        size: int = 2,
        limits: SandboxLimits | None = None,
        fuel: bool = False,
        cache_dir: Path | None = None,
        start_timeout: float = 600.0,
        check: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.limits = limits or SandboxLimits()
        self.fuel = fuel
        self.cache_dir = cache_dir
        self.start_timeout = start_timeout
        self.check = check
        self.artifact: Path | None = None
        self.build_seconds = 0.0
        self.built = False
        self._workers: set[_Worker] = set()
        # Unbounded: a worker that died while idle stays queued (and is skipped) next to its replacement.
        self._idle_send, self._idle_receive = anyio.create_memory_object_stream[_Worker](math.inf)
        self._stack = AsyncExitStack()
        self._group: anyio.abc.TaskGroup | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> SandboxPool:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Build the guest if the cache has none (in a subprocess), then start the workers.

        Raises:
            SandboxUnavailableError: the build failed or workers did not come up in ``start_timeout``.
        """
        self.artifact = await self._ensure_artifact()
        self._group = await self._stack.enter_async_context(anyio.create_task_group())
        try:
            with anyio.fail_after(self.start_timeout):
                async with anyio.create_task_group() as starters:
                    for _ in range(self.size):
                        starters.start_soon(self._add_worker)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop every worker and wait for them to exit."""
        self._closing = True
        for worker in list(self._workers):
            worker.alive = False
            if worker.process.stdin is not None:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await worker.process.stdin.aclose()
        with anyio.move_on_after(5):
            for worker in list(self._workers):
                await worker.process.wait()
        for worker in list(self._workers):
            worker.kill()
        if self._group is not None:
            self._group.cancel_scope.cancel()
        await self._stack.aclose()
        for worker in list(self._workers):
            await worker.process.aclose()
        self._workers.clear()

    async def _ensure_artifact(self) -> Path:
        command = [sys.executable, "-m", "sandbox.build", *(["--fuel"] if self.fuel else [])]
        env = self._env()
        started = time.perf_counter()
        with anyio.fail_after(self.start_timeout):
            done = await anyio.run_process(command, env=env, check=False, stderr=subprocess.PIPE)
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
            raise SandboxUnavailableError(f"building the sandbox guest failed: {message[0]}") from GuestBuildError()
        path, state, _ = done.stdout.decode().strip().split("\t")
        self.built = state == "built"
        self.build_seconds = time.perf_counter() - started
        return Path(path)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        if self.cache_dir is not None:
            env[CACHE_ENV] = str(self.cache_dir)
        return env

    async def _add_worker(self) -> None:
        assert self.artifact is not None and self._group is not None
        command = [sys.executable, "-m", "sandbox.worker", str(self.artifact), *(["--fuel"] if self.fuel else [])]
        process = await anyio.open_process(command, env=self._env(), stderr=None)
        assert process.stdout is not None
        worker = _Worker(process, BufferedByteReceiveStream(process.stdout))
        self._workers.add(worker)
        try:
            kind, _ = await worker.receive()
        except _WorkerGone:
            self._workers.discard(worker)
            await process.aclose()
            raise SandboxUnavailableError(f"sandbox worker exited with {process.returncode}") from None
        if kind is not Kind.READY:  # pragma: no cover - protocol violation
            raise ProtocolError(f"expected READY, got {kind.name}")
        self._group.start_soon(self._watch, worker)
        await self._idle_send.send(worker)

    async def _watch(self, worker: _Worker) -> None:
        await worker.process.wait()
        worker.alive = False
        self._workers.discard(worker)
        if not self._closing:
            logger.warning(
                "sandbox worker %s exited (%s); starting a replacement", worker.pid, worker.process.returncode
            )
            with anyio.CancelScope(shield=True):
                try:
                    await self._add_worker()
                except (SandboxUnavailableError, OSError):
                    logger.exception("could not replace a sandbox worker")

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        return [w.pid for w in self._workers if w.alive]

    # -- runs -----------------------------------------------------------------------------------------------------
    async def run(
        self,
        code: str,
        tools: ToolCaller,
        *,
        catalog: ToolCatalog | None = None,
        limits: SandboxLimits | None = None,
        acquire_timeout: float = 30.0,
        check: bool | None = None,
    ) -> RunResult:
        """Run one program. Failures of the program come back as ``RunError``; nothing it does raises here.

        Args:
            code: the Python program; it may ``print``, assign ``result`` and call tools.
            tools: runs each tool call (raise ``ToolCallError`` for a failure the program may see).
            catalog: the tools the program sees as server objects; ``tools.call(name, args)`` works regardless.
            limits: per-run limits; default the pool's.
            acquire_timeout: seconds to wait for a free worker.
            check: run the pre-check (default: the pool's ``check``).
        """
        limits = limits or self.limits
        started = time.perf_counter()
        checked = precheck(code) if (self.check if check is None else check) else None
        if checked is not None and not checked.ok:
            return RunError(checked.kind, checked.message, line=checked.line)
        catalog = catalog or EMPTY_CATALOG
        config = {
            "servers": catalog.guest_map(),
            "seed": secrets.randbits(64),
            "now": time.time(),
            "max_output": limits.max_output_bytes,
            "max_result": limits.max_result_bytes,
            "async": checked.is_async if checked is not None else "await" in code or "async " in code,
        }
        request = {
            "code": code,
            "config": orjson.dumps(config).decode(),
            "wall_time": limits.wall_time,
            "memory": limits.memory_bytes,
            "fuel": limits.fuel,
        }
        budget = CallBudget(tools, limits)
        for _attempt in range(2):  # a worker found dead before the run started is replaced and the run retried
            worker: _Worker | None = None
            with anyio.move_on_after(acquire_timeout):
                worker = await self._acquire()
            if worker is None:
                return RunError("unavailable", "no sandbox worker became free in time; try again")
            outcome = await self._run_on(worker, orjson.dumps(request), budget, limits)
            if outcome != "retry":
                return _finish(outcome, budget, time.perf_counter() - started)
        return RunError("crashed", "the sandbox worker died before the run started; try again")

    async def _acquire(self) -> _Worker:
        while True:
            worker = await self._idle_receive.receive()
            if worker.alive and worker.process.returncode is None:
                return worker

    async def _run_on(
        self, worker: _Worker, request: bytes, budget: CallBudget, limits: SandboxLimits
    ) -> dict[str, Any] | RunError | str:
        clean = False
        sent = False
        try:
            with anyio.move_on_after(limits.total_timeout):
                await worker.send(Kind.RUN, request)
                sent = True
                while True:
                    kind, payload = await worker.receive()
                    if kind is Kind.CALLS:
                        calls = [(str(n), str(a)) for n, a in orjson.loads(payload)]
                        replies = await budget.dispatch(calls)
                        await worker.send(Kind.REPLIES, orjson.dumps(replies))
                    elif kind is Kind.DONE:
                        clean = True
                        return orjson.loads(payload)
                    else:  # pragma: no cover - protocol violation
                        raise ProtocolError(f"unexpected {kind.name} during a run")
            message = f"the run exceeded its total time limit of {limits.total_timeout:g} s (tool calls included)"
            return RunError("timeout", message)
        except _WorkerGone:
            if not sent:
                return "retry"
            return RunError("crashed", "the sandbox worker crashed during the run; the run was lost")
        finally:
            if clean and worker.alive:
                self._idle_send.send_nowait(worker)
            else:
                worker.kill()  # the watcher starts a replacement


def _finish(outcome: dict[str, Any] | RunError | str, budget: CallBudget, duration: float) -> RunResult:
    calls = tuple(budget.records)
    if isinstance(outcome, RunError):
        return RunError(outcome.kind, outcome.message, tool_calls=calls, duration=duration, tool_time=budget.tool_time)
    assert isinstance(outcome, dict)
    common: dict[str, Any] = {
        "tool_calls": calls,
        "duration": duration,
        "guest_time": float(outcome["guest_time"]),
        "tool_time": budget.tool_time,
        "fuel_used": outcome["fuel_used"],
    }
    if outcome["trap_kind"] is not None:
        return RunError(outcome["trap_kind"], outcome["trap_message"], **common)
    body = orjson.loads(outcome["outcome"])
    if body["status"] == "ok":
        return RunOk(body["stdout"], orjson.loads(body["result_json"]), **common)
    return RunError(
        body["kind"],
        body["message"],
        stdout=body.get("stdout", ""),
        line=body.get("line"),
        traceback=body.get("traceback", ""),
        **common,
    )

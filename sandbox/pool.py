"""The pool of sandbox worker processes, and the run API the hub calls.

    async with SandboxPool(size=2) as pool:          # in the hub's lifespan
        result = await pool.run(code, tool_caller, catalog=catalog, limits=SandboxLimits(wall_time=2))

Each worker (``sandbox.worker``) runs one program at a time in a fresh wasm instance. A worker that dies (a wasmtime
abort, a kill, the total timeout) is replaced in the background; the run it was serving reports ``crashed`` or
``timeout``. Tool calls travel back from the worker over its pipe and run here, in the caller's event loop.

The pool trusts neither the program nor its worker: each frame a worker sends during a run is bounded by the run's
limits (``protocol.worker_frame_limits``) and refused from its header, and ``sandbox.outcome`` caps every text that
comes back. Runs pass an ``owner`` (the hub's virtual key); one owner holds at most ``per_owner`` workers at a time,
so it always leaves the others some (``sandbox.scheduler``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Literal

import anyio
import anyio.abc
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from sandbox.bridge import CallBudget, ToolCaller
from sandbox.build import CACHE_ENV, cached_artifact
from sandbox.catalog import EMPTY_CATALOG, ToolCatalog
from sandbox.limits import SandboxLimits
from sandbox.naming import naming_mistake
from sandbox.outcome import PROTOCOL, finish
from sandbox.precheck import precheck
from sandbox.protocol import (
    HEADER,
    READY_LIMIT,
    FrameTooLarge,
    Kind,
    ProtocolError,
    decode_calls,
    frame,
    parse_header,
    worker_frame_limits,
)
from sandbox.result import RunError, RunResult
from sandbox.scheduler import FairScheduler

logger = logging.getLogger(__name__)
progress = logging.getLogger("sandbox.progress")
"""Start-up progress a console should show (a first start builds the guest for a minute or more)."""
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class SandboxUnavailableError(RuntimeError):
    """The pool could not start: the guest could not be built (wasmtime or the builder missing, the cache directory
    not writable, the build failed) or no worker came up. The message is the cause, in words a user can act on."""


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

    def usable(self) -> bool:
        return self.alive and self.process.returncode is None

    async def send(self, kind: Kind, payload: bytes) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send(frame(kind, payload))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _WorkerGone from exc

    async def receive(self, limits: Mapping[Kind, int]) -> tuple[Kind, bytes]:
        """The next frame; one of a kind not in ``limits``, or larger than its limit, raises before its payload."""
        try:
            length, kind = parse_header(await self.reader.receive_exactly(HEADER.size), limits)
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
        per_owner: how many runs one owner may have at a time (waiting for a worker included); default
            ``max(1, size - 1)``, so one owner always leaves a worker for the others.
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
        per_owner: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.per_owner = max(1, size - 1) if per_owner is None else per_owner
        if self.per_owner < 1:
            raise ValueError("per_owner must be >= 1")
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
        self._scheduler = FairScheduler[_Worker](self.per_owner, usable=_Worker.usable)
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
            SandboxUnavailableError: the guest could not be built or workers did not come up in ``start_timeout``;
                the message names the cause.
        """
        if self.artifact is None:
            await self.prepare()
        self._group = await self._stack.enter_async_context(anyio.create_task_group())
        try:
            with anyio.move_on_after(self.start_timeout) as waited:
                try:
                    async with anyio.create_task_group() as starters:
                        for _ in range(self.size):
                            starters.start_soon(self._add_worker)
                except* SandboxUnavailableError as failed:
                    raise _first(failed) from None
                except* OSError as failed:
                    raise SandboxUnavailableError(f"a sandbox worker could not start: {_first(failed)}") from None
            if waited.cancelled_caught:
                raise SandboxUnavailableError(f"the sandbox workers did not start within {self.start_timeout:g} s")
        except BaseException:
            await self.aclose()
            raise

    async def prepare(self) -> Path:
        """Find the compiled guest, or build it: the slow part of a first start (a minute or more), run before
        ``start`` by an owner that must stay cancellable meanwhile. It opens nothing that needs closing.

        Raises:
            SandboxUnavailableError: the guest could not be built; the message names the cause.
        """
        if self.artifact is None:
            self.artifact = await self._ensure_artifact()
        return self.artifact

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
            worker.kill()  # one a replacement started while the loops above ran
            await worker.process.aclose()
        self._workers.clear()

    async def _ensure_artifact(self) -> Path:
        """The compiled guest: from the cache when it holds one, else built in a subprocess (minutes, once)."""
        started = time.perf_counter()
        directory = self.cache_dir / "sandbox" if self.cache_dir is not None else None
        found = await anyio.to_thread.run_sync(partial(cached_artifact, fuel=self.fuel, directory=directory))
        if found is not None:
            return found
        progress.info("building the Code Mode sandbox guest (first start only)…")
        command = [sys.executable, "-m", "sandbox.build", *(["--fuel"] if self.fuel else [])]
        done: subprocess.CompletedProcess[bytes] | None = None
        with anyio.move_on_after(self.start_timeout):
            try:
                done = await anyio.run_process(command, env=self._env(), check=False, stderr=subprocess.PIPE)
            except OSError as exc:
                raise SandboxUnavailableError(f"the guest build could not start: {exc}") from exc
        if done is None:
            raise SandboxUnavailableError(f"building the sandbox guest took longer than {self.start_timeout:g} s")
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise SandboxUnavailableError(lines[-1] if lines else f"the guest build exited with {done.returncode}")
        path, state, _ = done.stdout.decode().strip().split("\t")
        self.built = state == "built"
        self.build_seconds = time.perf_counter() - started
        if self.built:
            progress.info("built the Code Mode sandbox guest in %.1f s: %s", self.build_seconds, path)
        else:  # another process held the build lock and built it meanwhile
            progress.info(
                "the Code Mode sandbox guest was built by another process (%.1f s): %s", self.build_seconds, path
            )
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
            await worker.receive({Kind.READY: READY_LIMIT})
        except (_WorkerGone, ProtocolError) as exc:
            self._workers.discard(worker)
            worker.kill()
            await process.aclose()
            problem = exc if isinstance(exc, ProtocolError) else f"exited with {process.returncode} while starting"
            raise SandboxUnavailableError(f"a sandbox worker {problem} (its error is in the log)") from None
        if self._closing:  # a replacement that came up while the pool closes: its watcher would never be stopped
            self._workers.discard(worker)
            worker.kill()
            await process.aclose()
            return
        self._group.start_soon(self._watch, worker)
        self._scheduler.put(worker)

    async def _watch(self, worker: _Worker) -> None:
        await worker.process.wait()
        worker.alive = False
        self._workers.discard(worker)
        with anyio.CancelScope(shield=True):
            await worker.process.aclose()  # a dead worker's pipes are closed here, never left to the collector
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

    @property
    def waiting(self) -> int:
        """Runs waiting for a worker or for their owner's slot (for monitoring and tests)."""
        return self._scheduler.waiting

    @property
    def busy(self) -> int:
        """Live workers running a program (for monitoring)."""
        return max(0, len(self.worker_pids) - self._scheduler.idle)

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
        owner: str | None = None,
    ) -> RunResult:
        """Run one program. Failures of the program come back as ``RunError``; nothing it does raises here.

        Args:
            code: the Python program; it may ``print``, assign ``result`` and call tools.
            tools: runs each tool call (raise ``ToolCallError`` for a failure the program may see).
            catalog: the tools the program sees as server objects; ``tools.call(name, args)`` works regardless.
            limits: per-run limits; default the pool's.
            acquire_timeout: seconds to wait for a free worker (and, over ``per_owner``, for the owner's own slot).
            check: run the pre-check (default: the pool's ``check``).
            owner: who the run is for (the hub passes the virtual key id); at most ``per_owner`` runs of one owner
                hold or wait for a worker at a time, the others wait for one of them to end. None: not limited.
        """
        limits = limits or self.limits
        started = time.perf_counter()
        checked = precheck(code) if (self.check if check is None else check) else None
        if checked is not None and not checked.ok:
            return RunError(checked.kind, checked.message, line=checked.line)
        catalog = catalog or EMPTY_CATALOG
        mistake = naming_mistake(code, catalog)
        if mistake is not None:
            return RunError("rejected", mistake.message, line=mistake.line)
        config = {
            "servers": catalog.guest_map(),
            "seed": secrets.randbits(64),
            "now": time.time(),
            "max_output": limits.max_output_bytes,
            "max_result": limits.max_result_bytes,
            "max_error": limits.max_error_bytes,
            "max_args": limits.max_tool_args_bytes,
            "max_calls": limits.max_tool_calls,
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
                worker = await self._scheduler.acquire(owner)
            if worker is None:
                return RunError("unavailable", self._unavailable(owner))
            try:
                outcome = await self._run_on(worker, orjson.dumps(request), budget, limits)
            finally:
                self._scheduler.release(owner, worker)
            if outcome != "retry":
                return finish(outcome, limits, budget, time.perf_counter() - started)
        return RunError("crashed", "the sandbox worker died before the run started; try again")

    def _unavailable(self, owner: str | None) -> str:
        held = self._scheduler.running(owner)
        if owner is not None and held >= self.per_owner:
            runs = "1 run of this caller is" if held == 1 else f"{held} runs of this caller are"
            return f"{runs} already in progress, the most one caller may have; try again when one finishes"
        return "no sandbox worker became free in time; try again"

    async def _run_on(
        self, worker: _Worker, request: bytes, budget: CallBudget, limits: SandboxLimits
    ) -> bytes | RunError | Literal["retry"]:
        """Serve one run on ``worker``: the DONE payload, or the error the host ends the run with."""
        frames = worker_frame_limits(limits)
        clean = False
        sent = False
        try:
            with anyio.move_on_after(limits.total_timeout):
                await worker.send(Kind.RUN, request)
                sent = True
                while True:
                    kind, payload = await worker.receive(frames)
                    if kind is Kind.DONE:
                        clean = True
                        return payload
                    calls = decode_calls(payload)
                    refused = _refuse_calls(calls, limits)
                    if refused is not None:
                        return refused
                    replies = await budget.dispatch(calls)
                    await worker.send(Kind.REPLIES, orjson.dumps(replies))
            message = f"the run exceeded its total time limit of {limits.total_timeout:g} s (tool calls included)"
            return RunError("timeout", message)
        except FrameTooLarge as exc:
            return RunError("output_limit", _too_large(exc))
        except ProtocolError as exc:
            return RunError("protocol", f"{PROTOCOL}: {exc}")
        except _WorkerGone:
            if not sent:
                return "retry"
            return RunError("crashed", "the sandbox worker crashed during the run; the run was lost")
        finally:
            if not clean:
                worker.kill()  # the watcher starts a replacement


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group's failure (the others are the same kind)."""
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _refuse_calls(calls: list[tuple[str, str]], limits: SandboxLimits) -> RunError | None:
    """The error that ends a run whose worker sent a batch the guest should have refused, or None."""
    if len(calls) > max(1, limits.max_tool_calls):
        message = f"the program sent {len(calls)} tool calls in one batch; a run may make {limits.max_tool_calls}"
        return RunError("output_limit", message)
    size = sum(len(name.encode()) + len(args.encode()) for name, args in calls)
    if size > limits.max_tool_args_bytes:
        cap = limits.max_tool_args_bytes
        message = f"the program sent {size} bytes of tool call arguments in one batch, over the {cap}-byte cap"
        return RunError("output_limit", message)
    return None


def _too_large(exc: FrameTooLarge) -> str:
    if exc.kind is Kind.CALLS:
        return (
            f"the program's tool calls carry {exc.length} bytes, over the {exc.limit}-byte limit for tool call "
            "arguments; send less data per call"
        )
    return (
        f"the program's outcome is {exc.length} bytes, over the {exc.limit}-byte limit its output caps allow; "
        "print less and keep `result` small"
    )

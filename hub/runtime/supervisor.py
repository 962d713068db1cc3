"""The supervisor of `agenthub serve --workers N`: one small process that owns the listening socket and keeps N worker
processes serving on it.

It imports only the standard library (and, when counters are kept on this machine, the counter server), so that it
costs a few megabytes beside its workers: everything that needs the configuration runs in a child process of
`hub.runtime.worker`:

- `prepare` validates the configuration, migrates the database and generates the secrets of configured keys that
  have none (once per machine, not per worker), then reports on a pipe what the supervisor needs: the address, the
  worker count, the drain time, whether Redis holds the counters, and the generated keys (printed here, once);
- `serve` is one worker: the same app and HTTP protocol as a single-process hub, on the inherited socket; it writes
  one line on its ready pipe when it serves.

Life cycle:

- start: `prepare`, bind the socket (`SO_REUSEADDR`, IPv6 when the host has a colon, as uvicorn binds), make a
  private directory (mode 0700) and, unless Redis is configured, start there the counter server and the session
  bus (`hub.store.session_bus`: the relay and the ended sessions the workers share their handshake-era MCP
  sessions through); without `AGENTHUB_MASTER_KEY`, write there a random key for this run (a 0600 file the
  workers read; never an environment variable, which other tools print) that seals the sessions' ids, so a
  session survives a worker's restart and a reload, and ends with the supervisor; start worker 0 and, once it
  serves, the others (so the first start's one-time work in the database, such as creating the audit chain's
  head, runs in one process); then print the announcement;
- a worker that dies is started again after a delay that doubles with each failure in a row (0.5 s up to 30 s), so
  a crash loop does not spin; a worker that served for `STABLE_S` seconds before dying starts the count afresh.
  When no worker has ever served and `GIVE_UP` starts failed in a row, the supervisor gives up (exit 1);
- `SIGTERM` or `SIGINT`: every worker gets `SIGTERM` (uvicorn stops accepting, finishes the requests and streams in
  flight within `[hub] shutdown_grace_s`, then cuts off the rest); one still running `KILL_MARGIN_S` seconds later is
  killed. The supervisor exits 0 once they are gone. A second `SIGINT` kills them at once;
- `SIGHUP`: `prepare` again (a configuration that does not validate is refused with its reason and the running
  workers stay untouched), then a new generation of workers starts beside the old one; once all of it serves, the
  old workers drain as on `SIGTERM`. Connections are never dropped: the socket stays open throughout and both
  generations accept until the old one stops. A new worker that exits before it serves abandons the reload. The
  address cannot move without a restart (the socket is kept; a warning says so).

This module's loop is a plain `selectors` loop, not `anyio`: it waits on pipes, signals and child exits, nothing that
an async library would make simpler, and importing one would double the supervisor's memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn, Protocol

__all__ = [
    "COUNTERS_ENV",
    "GIVE_UP",
    "KILL_MARGIN_S",
    "STABLE_S",
    "Plan",
    "Supervisor",
    "exec_supervisor",
    "main",
]

logger = logging.getLogger("agenthub.supervisor")

COUNTERS_ENV = "AGENTHUB_COUNTERS_SOCKET"
"""The workers find the machine's counter server at this Unix socket path."""
BACKOFF_S = 0.5
"""Delay before a dead worker starts again; it doubles with each failure in a row."""
MAX_BACKOFF_S = 30.0
STABLE_S = 30.0
"""A worker that served this long before it died was not crash-looping."""
GIVE_UP = 5
"""Failed starts in a row, before any worker ever served, after which the supervisor exits."""
KILL_MARGIN_S = 10.0
"""Seconds past the drain time after which a worker still running is killed (its lifespan shutdown runs after the
drain: upstreams close, the request log flushes)."""
BACKLOG = 2048
"""The listening socket's backlog (uvicorn's default)."""
_COUNTERS, _SESSIONS, _KEY = "counters.sock", "sessions.sock", "session.key"
"""What the supervisor's private directory holds."""
_SESSIONS_ENV = "AGENTHUB_SESSIONS_SOCKET"
"""= `hub.store.session_bus.SOCKET_ENV` (not imported from there: with Redis the supervisor never loads it)."""
_KEY_ENV = "AGENTHUB_SESSION_KEY_FILE"
"""= `hub.store.session_bus.KEY_ENV`."""
_MASTER_KEY_ENV = "AGENTHUB_MASTER_KEY"
"""= `connectors.auth.crypto.MASTER_KEY_ENV` (not imported: the supervisor loads nothing it does not need)."""


class _Service(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


class Plan(NamedTuple):
    """What `prepare` reported about a configuration."""

    host: str
    port: int
    workers: int
    grace: float
    redis: bool
    keys: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_report(cls, raw: bytes) -> Plan:
        data: dict[str, Any] = json.loads(raw)
        keys = tuple((str(name), str(secret)) for name, secret in data.get("keys", []))
        host, port, workers, grace = str(data["host"]), int(data["port"]), int(data["workers"]), float(data["grace"])
        return cls(host, port, workers, grace, bool(data["redis"]), keys)


class _Worker:
    """One worker process, with the read end of its ready pipe."""

    __slots__ = ("buffer", "generation", "index", "kill_at", "lines", "process", "ready_at", "ready_fd", "started")

    def __init__(
        self, index: int, generation: int, process: subprocess.Popen[bytes], ready_fd: int | None, started: float
    ) -> None:
        self.index = index
        self.generation = generation
        self.process = process
        self.ready_fd = ready_fd
        self.started = started
        self.ready_at: float | None = None
        self.kill_at: float | None = None
        """Set once it was asked to stop: killed if still running then."""
        self.lines: list[str] = []
        self.buffer = b""


class Options(NamedTuple):
    """The `agenthub serve` arguments the workers and `prepare` are started with again."""

    config: str
    listen: str | None = None
    workers: int | None = None


class Supervisor:
    """Owns the socket, the counter server and the workers; `run` returns the exit code."""

    def __init__(self, options: Options, *, clock: Any = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self._python = [sys.executable, *(["-OO"] if sys.flags.optimize >= 2 else [])]
        self._selector = selectors.DefaultSelector()
        self._workers: list[_Worker] = []
        self._plan: Plan | None = None
        """The plan of the generation serving now (None before the first one serves)."""
        self._current = 0
        self._candidate: tuple[int, Plan] | None = None
        """A generation starting (the first one, or a reload's)."""
        self._restarts: list[tuple[float, int, int]] = []
        """(when, index, generation) of dead workers to start again."""
        self._failures = 0
        self._stopping = False
        self._exit_code = 0
        self._signals: list[int] = []
        self._reload: tuple[subprocess.Popen[bytes], int, bytearray] | None = None
        self._reload_again = False
        self._sock: socket.socket | None = None
        self._dir: str | None = None
        self._counters: _Service | None = None
        self._bus: _Service | None = None
        self._key: str | None = None
        """The file of the key that seals session ids for this run (None with `AGENTHUB_MASTER_KEY`)."""

    # -- start and stop -------------------------------------------------------------------------------------------

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, "wake")
        previous = signal.set_wakeup_fd(wake_w)
        handlers = {  # from the start: a SIGHUP during `prepare` must not end the supervisor (its default action)
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        }
        try:
            plan = self._prepare_now()
            if plan is None:
                return 2
            try:
                self._sock = _bind(plan.host, plan.port)
            except OSError as exc:
                logger.error("cannot listen on %s:%s: %s", plan.host, plan.port, exc.strerror or exc)
                return 1
            self._dir = _private_directory()
            self._ensure_session_key()
            self._ensure_counters(plan)
            self._candidate = (1, plan)
            self._spawn(0, 1, plan, announce=True)
            while self._workers or self._restarts or self._reload is not None or not self._stopping:
                self._step()
        finally:
            for worker in self._workers:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                worker.process.wait()
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._close()
            os.close(wake_r)
            os.close(wake_w)
        return self._exit_code

    def _close(self) -> None:
        for service in (self._counters, self._bus):
            if service is not None:
                service.close()
        self._counters = self._bus = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._dir is not None:
            for name in (_COUNTERS, _SESSIONS, _KEY):  # the servers remove their sockets; a crash may not
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._dir, name))
            with contextlib.suppress(OSError):
                os.rmdir(self._dir)
            self._dir = None

    def _ensure_counters(self, plan: Plan) -> None:
        """Rate-limit and budget counters, and the session bus, for the workers of this machine, unless Redis holds
        them."""
        if plan.redis or self._dir is None:
            return
        if self._counters is None:
            from hub.store.shared_counters import CounterServer

            server = CounterServer(os.path.join(self._dir, _COUNTERS))
            server.start()
            self._counters = server
        if self._bus is None:
            from hub.store.session_bus import SessionBusServer

            bus = SessionBusServer(os.path.join(self._dir, _SESSIONS))
            bus.start()
            self._bus = bus

    def _ensure_session_key(self) -> None:
        """Without `AGENTHUB_MASTER_KEY`, a key for this run that seals the workers' session ids."""
        if os.environ.get(_MASTER_KEY_ENV) or self._dir is None:
            return
        from hub.store.session_bus import write_key

        path = os.path.join(self._dir, _KEY)
        write_key(path)
        self._key = path

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    # -- the loop -------------------------------------------------------------------------------------------------

    def _step(self) -> None:
        now = self._clock()
        timers = [when for when, _, _ in self._restarts] + [w.kill_at for w in self._workers if w.kill_at is not None]
        timeout = max(0.0, min([*timers, now + 1.0]) - now)
        for key, _ in self._selector.select(timeout):
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    while os.read(key.fd, 512):
                        pass
            elif key.data == "reload":
                self._read_reload(key.fd)
            else:
                self._read_ready(key.data)
        while self._signals:
            self._handle_signal(self._signals.pop(0))
        self._reap()
        self._timers()

    def _handle_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self._stopping and signum == signal.SIGINT:
                logger.warning("second interrupt: stopping the workers now")
                for worker in self._workers:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
                return
            if not self._stopping:
                logger.info("stopping: draining %d workers", len(self._workers))
            self._shutdown()
        elif signum == signal.SIGHUP and not self._stopping:
            if self._reload is not None or self._candidate is not None:
                self._reload_again = True  # once the start or the reload under way ends
            else:
                self._start_reload()

    def _shutdown(self) -> None:
        self._stopping = True
        self._restarts.clear()
        if self._reload is not None:
            with contextlib.suppress(ProcessLookupError):
                self._reload[0].kill()
        grace = (self._plan or (self._candidate[1] if self._candidate else None) or _NO_PLAN).grace
        for worker in self._workers:
            self._stop_worker(worker, grace)

    def _stop_worker(self, worker: _Worker, grace: float) -> None:
        if worker.kill_at is None:
            worker.kill_at = self._clock() + grace + KILL_MARGIN_S
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)

    def _timers(self) -> None:
        now = self._clock()
        for worker in self._workers:
            if worker.kill_at is not None and now >= worker.kill_at and worker.process.poll() is None:
                logger.warning("worker %d (pid %d) did not stop in time: killed", worker.index, worker.process.pid)
                worker.process.kill()
        due = [r for r in self._restarts if r[0] <= now]
        self._restarts = [r for r in self._restarts if r[0] > now]
        for _, index, generation in due:
            plan = self._generation_plan(generation)
            if plan is not None and not self._stopping:
                self._spawn(index, generation, plan)

    def _generation_plan(self, generation: int) -> Plan | None:
        if self._candidate is not None and self._candidate[0] == generation:
            return self._candidate[1]
        return self._plan if generation == self._current else None

    # -- workers --------------------------------------------------------------------------------------------------

    def _spawn(self, index: int, generation: int, plan: Plan, *, announce: bool = False) -> None:
        assert self._sock is not None
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        sock_fd = self._sock.fileno()
        argv = [*self._python, "-m", "hub.runtime.worker", "serve", *self._common_args(plan.workers)]
        argv += ["--fd", str(sock_fd), "--ready-fd", str(write_fd), "--index", str(index)]
        if announce:
            argv.append("--announce")
        env = dict(os.environ)
        for name in (COUNTERS_ENV, _SESSIONS_ENV, _KEY_ENV):
            env.pop(name, None)
        if not plan.redis and self._dir is not None:
            env[COUNTERS_ENV] = os.path.join(self._dir, _COUNTERS)
            env[_SESSIONS_ENV] = os.path.join(self._dir, _SESSIONS)
        if self._key is not None:
            env[_KEY_ENV] = self._key
        try:
            process = subprocess.Popen(argv, pass_fds=(sock_fd, write_fd), env=env, stdin=subprocess.DEVNULL)
        finally:
            os.close(write_fd)
        worker = _Worker(index, generation, process, read_fd, self._clock())
        self._workers.append(worker)
        self._selector.register(read_fd, selectors.EVENT_READ, worker)
        logger.info("worker %d started (pid %d)", index, process.pid)

    def _common_args(self, workers: int | None) -> list[str]:
        argv = ["--config", self.options.config]
        if self.options.listen is not None:
            argv += ["--listen", self.options.listen]
        if workers is not None:
            argv += ["--workers", str(workers)]
        return argv

    def _read_ready(self, worker: _Worker) -> None:
        assert worker.ready_fd is not None
        try:
            data = os.read(worker.ready_fd, 65536)
        except BlockingIOError:
            return
        if data:
            worker.buffer += data
            if b"\n" in worker.buffer and worker.ready_at is None:
                line = worker.buffer.split(b"\n", 1)[0]
                with contextlib.suppress(ValueError):
                    worker.lines = [str(x) for x in json.loads(line).get("lines", [])]
                worker.ready_at = self._clock()
                self._ready(worker)
            return
        self._close_ready(worker)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _ready(self, worker: _Worker) -> None:
        logger.info("worker %d (pid %d) serves", worker.index, worker.process.pid)
        candidate = self._candidate
        if candidate is None or candidate[0] != worker.generation or self._stopping:
            return
        generation, plan = candidate
        if self._plan is None and worker.index == 0:  # the first start: the others follow the first
            taken = {w.index for w in self._workers if w.generation == generation}
            taken |= {index for _, index, g in self._restarts if g == generation}
            for index in range(1, plan.workers):
                if index not in taken:
                    self._spawn(index, generation, plan)
        mine = [w for w in self._workers if w.generation == generation]
        if len(mine) < plan.workers or any(w.ready_at is None for w in mine):
            return
        first = self._plan is None
        old = self._current
        self._plan, self._current, self._candidate = plan, generation, None
        if first:
            self._announce(plan, worker.lines)
        else:
            for name, secret in plan.keys:
                _out(f"Virtual key '{name}' (shown once, store it now): {secret}")
            logger.warning("configuration reloaded: %d workers serve it; the previous ones drain", plan.workers)
        self._restarts = [r for r in self._restarts if r[2] == generation]
        for other in self._workers:
            if other.generation == old:
                self._stop_worker(other, plan.grace)
        if self._reload_again:
            self._reload_again = False
            self._start_reload()

    def _announce(self, plan: Plan, upstreams: Sequence[str]) -> None:
        shown = f"[{plan.host}]" if ":" in plan.host else plan.host
        _out(f"AgentHub is serving MCP at http://{shown}:{plan.port}/mcp ({plan.workers} workers)")
        for name, secret in plan.keys:
            _out(f"Virtual key '{name}' (shown once, store it now): {secret}")
        for line in upstreams:
            _out(line)

    def _reap(self) -> None:
        for worker in list(self._workers):
            code = worker.process.poll()
            if code is None:
                continue
            if worker.ready_fd is not None:
                self._read_ready(worker)  # a last line written just before it ended
                self._close_ready(worker)
            self._workers.remove(worker)
            self._exited(worker, code)
        if self._reload is not None and self._reload[0].poll() is not None and self._reload[1] < 0:
            self._finish_reload()

    def _exited(self, worker: _Worker, code: int) -> None:
        if self._stopping or worker.kill_at is not None:
            logger.info("worker %d (pid %d) stopped (%s)", worker.index, worker.process.pid, _status(code))
            return
        candidate = self._candidate
        if candidate is not None and candidate[0] == worker.generation and self._plan is not None:
            logger.error(
                "reload abandoned: a new worker (pid %d) ended (%s) before it served; the running workers keep serving",
                worker.process.pid,
                _status(code),
            )
            self._candidate = None
            for other in self._workers:
                if other.generation == worker.generation:
                    self._stop_worker(other, 0.0)
            return
        now = self._clock()
        if worker.ready_at is not None and now - worker.ready_at >= STABLE_S:
            self._failures = 0
        self._failures += 1
        if self._plan is None and self._failures >= GIVE_UP:
            logger.error("giving up: %d worker starts in a row failed (last: %s)", self._failures, _status(code))
            self._exit_code = 1
            self._shutdown()
            return
        delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (self._failures - 1))
        logger.warning(
            "worker %d (pid %d) ended (%s); starting it again in %.1f s",
            worker.index,
            worker.process.pid,
            _status(code),
            delay,
        )
        self._restarts.append((now + delay, worker.index, worker.generation))

    # -- configuration ----------------------------------------------------------------------------------------

    def _prepare_argv(self, report_fd: int) -> list[str]:
        argv = [*self._python, "-m", "hub.runtime.worker", "prepare", *self._common_args(self.options.workers)]
        return [*argv, "--report-fd", str(report_fd)]

    def _prepare_now(self) -> Plan | None:
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(self._prepare_argv(write_fd), pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd, "rb") as report:
            raw = report.read()
        if process.wait() != 0 or not raw:
            return None
        return Plan.from_report(raw)

    def _start_reload(self) -> None:
        logger.warning("reloading the configuration")
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        try:
            process = subprocess.Popen(self._prepare_argv(write_fd), pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
        finally:
            os.close(write_fd)
        self._reload = (process, read_fd, bytearray())
        self._selector.register(read_fd, selectors.EVENT_READ, "reload")

    def _read_reload(self, fd: int) -> None:
        assert self._reload is not None
        process, _, buffer = self._reload
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            buffer.extend(data)
            return
        self._selector.unregister(fd)
        os.close(fd)
        self._reload = (process, -1, buffer)
        if process.poll() is not None:
            self._finish_reload()

    def _finish_reload(self) -> None:
        assert self._reload is not None
        process, _, buffer = self._reload
        self._reload = None
        code = process.wait()
        if self._stopping:
            return
        if code != 0 or not buffer:
            logger.error(
                "reload refused: the new configuration does not validate (%s, reason above); the running workers keep "
                "serving",
                _status(code),
            )
        else:
            self._begin_generation(Plan.from_report(bytes(buffer)))
        if self._reload_again and self._candidate is None:
            self._reload_again = False
            self._start_reload()

    def _begin_generation(self, plan: Plan) -> None:
        assert self._plan is not None
        if (plan.host, plan.port) != (self._plan.host, self._plan.port):
            logger.warning(
                "listen changed to %s:%d: the hub keeps serving on %s:%d until it is restarted",
                plan.host,
                plan.port,
                self._plan.host,
                self._plan.port,
            )
            plan = plan._replace(host=self._plan.host, port=self._plan.port)
        self._ensure_counters(plan)
        generation = self._current + 1
        self._candidate = (generation, plan)
        for index in range(plan.workers):
            self._spawn(index, generation, plan)


_NO_PLAN = Plan("", 0, 0, 0.0, redis=True)


def _private_directory() -> str:
    """A new directory only this user can enter (mode 0700), for the counter server's socket: `tempfile.mkdtemp`
    without importing `tempfile` (and `random`, `shutil`) into the supervisor."""
    base = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - a fresh name, created exclusively below
    while True:
        path = os.path.join(base, f"agenthub-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def _status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit {code}"


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound as uvicorn binds `host:port` (IPv6 when the host has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def exec_supervisor(config: str, *, listen: str | None, workers: int | None) -> NoReturn:
    """Replace this process with the supervisor (same PID, environment and working directory): what the command
    line imported so far, the configuration models above all, would otherwise stay in the supervisor's memory."""
    python = [sys.executable, *(["-OO"] if sys.flags.optimize >= 2 else [])]
    argv = [*python, "-m", "hub.runtime.supervisor", "--config", config]
    if listen is not None:
        argv += ["--listen", listen]
    if workers is not None:
        argv += ["--workers", str(workers)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - this interpreter, our module


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="agenthub serve", description="the supervisor of the worker processes")
    parser.add_argument("--config", required=True)
    parser.add_argument("--listen", default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    level = os.environ.get("AGENTHUB_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Supervisor(Options(args.config, args.listen, args.workers)).run()


if __name__ == "__main__":
    sys.exit(main())

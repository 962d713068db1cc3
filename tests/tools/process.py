"""Start a server subprocess on a free loopback port, wait until it listens, and always stop it.

    async with served([sys.executable, "tests/servers/fixture_server.py",
                       "--transport", "streamable-http", "--port", "{port}"]) as server:
        async with Client(server.url("/mcp")) as client:
            ...

    with served_sync(tools.server_everything("streamableHttp"), env={"PORT": "{port}"}) as server:
        ...

`{port}` in any argument or environment value is replaced by the chosen port. The server runs in its
own process group; on exit it gets SIGTERM, then SIGKILL after `stop_timeout` seconds, by PID. It has
`ready_timeout` seconds (`PATIENCE` unless told) to listen: on a busy machine a server that imports the MCP SDK
can take tens of seconds, and the process exiting ends the wait at once.
Its stdout and stderr go to a temporary file (`ServedProcess.output()`), shown in the error when the
process dies or does not listen in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from tests.tools.node import REPO_ROOT
from tests.tools.patience import PATIENCE

LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server exited, or did not accept connections, before the deadline."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedProcess:
    """A running server subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, path: str = "/mcp") -> str:
        """The server's URL for `path` (default `/mcp`)."""
        return f"{self.base_url}{path}"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None


def _expand(value: str, port: int) -> str:
    return value.replace("{port}", str(port))


def _spawn(argv: Sequence[str], port: int, env: Mapping[str, str] | None, cwd: Path | str | None) -> ServedProcess:
    full_env = dict(os.environ)
    full_env.update({key: _expand(value, port) for key, value in (env or {}).items()})
    fd, log_name = tempfile.mkstemp(prefix="agenthub-server-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [_expand(arg, port) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd or REPO_ROOT,
            start_new_session=True,
        )
    return ServedProcess(process, port, Path(log_name))


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _not_ready(served: ServedProcess, why: str) -> ServerStartError:
    return ServerStartError(f"{why} (pid {served.pid}, port {served.port}); output:\n{served.output()[-4000:]}")


def stop(served: ServedProcess, stop_timeout: float = 30.0) -> int | None:
    """Stop the process group led by `served.pid`: SIGTERM, then SIGKILL. Returns the exit code."""
    process = served.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=stop_timeout)
    # Children left in the group (a tool's own subprocesses) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


@contextlib.asynccontextmanager
async def served(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    port: int | None = None,
    ready_timeout: float = PATIENCE,
    stop_timeout: float = 30.0,
) -> AsyncGenerator[ServedProcess]:
    """Run `argv` as a server on a free port until the block ends (async).

    Raises:
        ServerStartError: the process exited or did not listen within `ready_timeout` seconds.
    """
    chosen = port or free_port()
    process = _spawn(argv, chosen, env, cwd)
    try:
        try:
            with anyio.fail_after(ready_timeout):
                while not await anyio.to_thread.run_sync(_accepts, chosen):
                    if not process.running():
                        raise _not_ready(process, f"server exited with {process.process.returncode}")
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise _not_ready(process, f"server did not listen within {ready_timeout}s") from None
        yield process
    finally:
        await anyio.to_thread.run_sync(stop, process, stop_timeout)
        process.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def served_sync(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    port: int | None = None,
    ready_timeout: float = PATIENCE,
    stop_timeout: float = 30.0,
) -> Generator[ServedProcess]:
    """Run `argv` as a server on a free port until the block ends (blocking twin of `served`).

    Raises:
        ServerStartError: the process exited or did not listen within `ready_timeout` seconds.
    """
    chosen = port or free_port()
    process = _spawn(argv, chosen, env, cwd)
    try:
        deadline = time.monotonic() + ready_timeout
        while not _accepts(chosen):
            if not process.running():
                raise _not_ready(process, f"server exited with {process.process.returncode}")
            if time.monotonic() > deadline:
                raise _not_ready(process, f"server did not listen within {ready_timeout}s")
            time.sleep(0.05)
        yield process
    finally:
        stop(process, stop_timeout)
        process.log_path.unlink(missing_ok=True)

"""Real PostgreSQL and Redis servers for the tests, in temporary folders on free 127.0.0.1 ports.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the data folder is handed to the
`nobody` user and `initdb`/`postgres` run as that user. The binaries are looked up on PATH and under
/usr/lib/postgresql/*/bin (Debian's layout); when they are missing the test is skipped, or fails under CI
(`tests.tools.requirements.unavailable`).

`postgres_server()` and `redis_server()` serve a whole block. A test that needs a server to go away and come back
(a database lost under a running hub) uses `restartable_postgres()` / `restartable_redis()`: the server keeps its
port and data folder across `stop()` and `start()`. Either way every server is stopped by PID, and its folder
removed, when the block ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import psycopg

from tests.tools import PATIENCE, free_port
from tests.tools.requirements import unavailable


def postgres_binary(name: str) -> str | None:
    """`initdb`, `postgres`... from PATH, else from the newest /usr/lib/postgresql/N/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=PATIENCE)


class RestartablePostgres:
    """One PostgreSQL cluster in a temporary folder, on one 127.0.0.1 port for its whole life."""

    def __init__(self) -> None:
        initdb, postgres = postgres_binary("initdb"), postgres_binary("postgres")
        if initdb is None or postgres is None:
            unavailable("PostgreSQL (initdb, postgres)", "apt-get install postgresql")
        self._postgres = postgres
        self.root = Path(tempfile.mkdtemp(prefix="agenthub-pg-"))
        self._user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._user = "nobody"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run(
                [initdb, "-D", str(self.root / "data"), "-U", "agenthub", "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True, capture_output=True, user=self._user, cwd=self.root, timeout=PATIENCE,
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://agenthub@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        log = self.root / "server.log"
        with open(log, "ab") as out:
            self._proc = proc = subprocess.Popen(
                [self._postgres, "-D", str(self.root / "data"), "-p", str(self.port), "-k", str(self.root),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "max_connections=100"],
                stdout=out, stderr=subprocess.STDOUT, user=self._user, cwd=self.root,
            )  # fmt: skip
        conninfo = f"host=127.0.0.1 port={self.port} user=agenthub dbname=postgres"
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                psycopg.connect(conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server by PID (fast shutdown: open sessions are ended) and wait until it has exited."""
        if self._proc is not None:
            _stop(self._proc, signal.SIGINT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RestartableRedis:
    """One redis-server on one 127.0.0.1 port for its whole life."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "apt-get install redis-server")
        self._binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="agenthub-redis-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it says it accepts connections."""
        args = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root), "--save", "",
                "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        self._proc = proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited with {proc.wait()}")
        proc.stdout.close()

    def stop(self) -> None:
        """Stop the server by PID and wait until it has exited."""
        if self._proc is not None:
            _stop(self._proc, signal.SIGTERM)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def restartable_postgres() -> Generator[RestartablePostgres]:
    server = RestartablePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def restartable_redis() -> Generator[RestartableRedis]:
    server = RestartableRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def postgres_server() -> Generator[str]:
    """A fresh PostgreSQL cluster for the block; yields its SQLAlchemy URL (psycopg driver, trust auth on
    loopback)."""
    with restartable_postgres() as server:
        yield server.url


@contextlib.contextmanager
def redis_server() -> Generator[str]:
    """A private redis-server for the block; yields its URL."""
    with restartable_redis() as server:
        yield server.url

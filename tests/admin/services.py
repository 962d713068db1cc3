"""Real PostgreSQL and Redis servers for the scale-out tests, in temporary folders on free 127.0.0.1 ports.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the data folder is handed to the
`nobody` user and `initdb`/`postgres` run as that user. Both servers are stopped by PID when the block ends.
The binaries are looked up on PATH and under /usr/lib/postgresql/*/bin (Debian's layout); when they are missing the
test is skipped, or fails under CI (`tests.tools.requirements.unavailable`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def postgres_server() -> Generator[str]:
    """A fresh PostgreSQL cluster; yields its SQLAlchemy URL (psycopg driver, trust auth on loopback)."""
    initdb, postgres = postgres_binary("initdb"), postgres_binary("postgres")
    if initdb is None or postgres is None:
        unavailable("PostgreSQL (initdb, postgres)", "apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="agenthub-pg-"))
    user: str | None = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        user = "nobody"
    data, log = root / "data", root / "server.log"
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [initdb, "-D", str(data), "-U", "agenthub", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, user=user, cwd=root, timeout=120,
        )  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [postgres, "-D", str(data), "-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=100"],
                stdout=out, stderr=subprocess.STDOUT, user=user, cwd=root,
            )  # fmt: skip
        conninfo = f"host=127.0.0.1 port={port} user=agenthub dbname=postgres"
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                psycopg.connect(conninfo, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)
        yield f"postgresql+psycopg://agenthub@127.0.0.1:{port}/postgres"
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Generator[str]:
    """A private redis-server; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", "apt-get install redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="agenthub-redis-"))
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
            "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited with {proc.wait()}")
        proc.stdout.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)

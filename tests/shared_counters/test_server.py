"""The counter server's lifetime: it binds a socket only its user may use, replaces a stale one and refuses a live
one, closes every connection and removes its socket on close, and loads next to nothing of the hub (it runs in
the supervisor, whose memory is budgeted)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hub.store.shared_counters import CounterServer
from tests.tools import REPO_ROOT
from tests.tools.patience import PATIENCE


def test_the_socket_is_private_to_its_user_and_removed_on_close(socket_dir: Path) -> None:
    path = socket_dir / "c.sock"
    with CounterServer(str(path)):
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert not path.exists()


def test_close_ends_the_connections_of_idle_workers(socket_dir: Path) -> None:
    server = CounterServer(str(socket_dir / "c.sock"))
    server.start()
    with socket.socket(socket.AF_UNIX) as worker:
        worker.connect(server.path)
        worker.sendall(b"\x00\x00")  # half a frame: the server's thread for it waits for the rest
        server.close()
        try:
            ended = worker.recv(16) == b""
        except ConnectionResetError:  # closed with the half frame unread
            ended = True
        assert ended
    server.close()  # a second close is a no-op


def test_a_stale_socket_is_replaced_and_a_live_one_refused(socket_dir: Path) -> None:
    path = socket_dir / "c.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed server leaves behind
    with CounterServer(str(path)) as server:
        with pytest.raises(OSError, match="already listens"):
            CounterServer(str(path)).start()
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(server.path)
    regular = socket_dir / "file"
    regular.write_text("")
    with pytest.raises(OSError, match="not a socket"):
        CounterServer(str(regular)).start()


def test_the_server_module_loads_neither_pydantic_nor_starlette_nor_sqlalchemy() -> None:
    probe = (
        "import json, sys, hub.store.shared_counters; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'pydantic_settings', 'starlette', 'sqlalchemy', 'sqlmodel', 'anyio', 'hub'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=PATIENCE, check=True
    ).stdout
    loaded = json.loads(out)
    assert loaded == [
        "hub",
        "hub.governance",
        "hub.governance.counters",
        "hub.store",
        "hub.store.counter_wire",
        "hub.store.counters",
        "hub.store.shared_counters",
    ]


def test_python_dash_m_serves_until_sigterm_and_removes_its_socket(socket_dir: Path) -> None:
    path = socket_dir / "c.sock"
    argv = [sys.executable, "-m", "hub.store.shared_counters", str(path)]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"listening on {path}\n"
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
        proc.terminate()
        assert proc.wait(PATIENCE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert not path.exists()

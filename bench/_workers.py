"""The `--workers N` axis of the benchmarks: start `agenthub serve --workers N`, wait until every worker serves, and
read CPU time and memory over the whole process tree (the supervisor and its workers)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from _procs import ROOT, start, wait_port

__all__ = ["start_hub_workers", "tree_cpu_seconds", "tree_pids", "tree_rss_mib"]


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of `pid` and its descendants (a worker that ended no longer counts)."""
    total = 0.0
    for one in tree_pids(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_mib(pid: int) -> list[float]:
    """Resident memory (MiB) of `pid`, then of each descendant."""
    out: list[float] = []
    for one in tree_pids(pid):
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        out.extend(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return out


def start_hub_workers(
    argv: list[str], port: int, env: dict[str, str] | None, workers: int, timeout: float = 120
) -> subprocess.Popen[bytes]:
    """`argv` (an `agenthub serve` command line) with `--workers N`; returns once it serves (with N > 1: once the
    supervisor announced that every worker serves)."""
    argv = [*argv, "--workers", str(workers)]
    if workers == 1:
        return start(argv, port, env)
    fd, name = tempfile.mkstemp(prefix="agenthub-bench-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env)
    wait_port(port, proc)
    deadline = time.monotonic() + timeout
    while "AgentHub is serving" not in Path(name).read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the hub did not serve: {Path(name).read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc

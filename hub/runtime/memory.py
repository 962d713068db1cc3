"""Keep a long-running hub small: run it without docstrings, and give freed heap memory back to the system.

Docstrings are a large part of what imported code keeps in memory (SQLAlchemy's and the `mcp` SDK's above all):
`agenthub serve` runs under `-OO`, about 5 MiB less for an idle hub (see `run_without_docstrings`).

Reading a large upstream catalog leaves freed heap behind; glibc keeps such memory in the process, since its trim
threshold grows after large allocations, until it is asked to return it (`malloc_trim`). The hub asks once it is
up and after each catalog change. On a C library without `malloc_trim` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["OPTIMIZE_ENV", "release_free_memory", "run_without_docstrings"]

OPTIMIZE_ENV = "AGENTHUB_OPTIMIZE"
"""Set to `0` to keep docstrings and asserts in `agenthub serve` (for debugging)."""


def run_without_docstrings(args: Sequence[str]) -> None:
    """Run the `agenthub` command again in the same process with `-OO` (docstrings and asserts left out), unless
    it already runs so, `AGENTHUB_OPTIMIZE=0` is set, it was not started as the console script, or this is not a
    POSIX system; returns only when it does not.

    `os.execv` replaces the interpreter before anything is opened: the process keeps its PID, environment and
    working directory, and `args` are its arguments. Nothing in the hub reads a docstring; under `-OO` the admin
    API's OpenAPI document lacks the models' descriptions (field descriptions stay).
    """
    if sys.flags.optimize >= 2 or os.environ.get(OPTIMIZE_ENV) == "0" or os.name != "posix" or not sys.executable:
        return
    script = sys.argv[0]
    if script.endswith(".py") or not os.path.isfile(script):
        return  # `python -m ...` or an embedding: run as started
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-OO", script, *args])  # noqa: S606 - this interpreter, same args


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return free heap pages to the system; True when some were released. Safe to call from any thread."""
    return _TRIM is not None and _TRIM(0) == 1

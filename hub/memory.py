"""Give freed heap memory back to the operating system (glibc's `malloc_trim`).

Reading a large upstream catalog leaves megabytes of freed heap behind (the `mcp` SDK validates each listing as
one JSON document); glibc keeps such memory in the process, since its trim threshold grows after large
allocations, until it is asked to return it. The hub asks once it is up and after each catalog change. On a C
library without `malloc_trim` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

__all__ = ["release_free_memory"]


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

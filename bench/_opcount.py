"""Run a Python module with every bytecode counted between two signals (for `bench/bytecodes_bench.py`).

    python bench/_opcount.py OUT -m MODULE ARGS...

A trace function is installed in this thread and in every thread started later, before the module runs; it traces
nothing until SIGUSR1 starts the count (from zero), and SIGUSR2 writes the count so far to the file OUT. Frames
already running when the count starts are not traced themselves (their callees are): a loop's own few bytecodes
per turn go uncounted, what it calls does not.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

_count = [0]
_on = [False]
_by: dict[tuple[str, str], int] = {}
"""With `OPCOUNT_BY_FUNCTION=1`: the count per (file, function), written after the total (the 40 largest)."""


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        _count[0] += 1
    return _local


def _local_by(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        _count[0] += 1
        code = frame.f_code
        key = (code.co_filename, code.co_name)
        _by[key] = _by.get(key, 0) + 1
    return _local_by


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    if not _on[0]:
        return None
    frame.f_trace_opcodes = True
    return _local_by if _BY_FUNCTION else _local


_BY_FUNCTION = os.environ.get("OPCOUNT_BY_FUNCTION") == "1"


def main() -> None:
    out = Path(sys.argv[1])
    if sys.argv[2] != "-m":
        raise SystemExit(__doc__)
    module = sys.argv[3]

    def start(signum: int, frame: object) -> None:
        _count[0] = 0
        _by.clear()
        _on[0] = True

    def dump(signum: int, frame: object) -> None:
        top = sorted(_by.items(), key=lambda kv: -kv[1])[:40]
        lines = [f"{n} {'/'.join(f.split('/')[-2:])} {name}" for (f, name), n in top]
        out.write_text("\n".join([str(_count[0]), *lines]))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = [module, *sys.argv[4:]]
    threading.settrace(_global)
    sys.settrace(_global)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

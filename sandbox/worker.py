"""A sandbox worker process: ``python -m sandbox.worker ARTIFACT [--fuel]``.

Loads the compiled guest once, then serves runs one at a time over stdin/stdout frames (``sandbox.protocol``). The
guest's tool calls block this process while the parent runs them. Anything else written to stdout (a stray print,
a Rust panic message) goes to stderr instead, so it cannot corrupt the frames.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from sandbox.build import verified
from sandbox.engine import GuestRuntime, RunBudget
from sandbox.protocol import Kind, ProtocolError, read_frame, write_frame

EXIT_BAD_ARTIFACT = 3


def serve(runtime: GuestRuntime, in_fd: int, out_fd: int) -> None:
    """Serve RUN frames until the parent closes the pipe."""

    def bridge(calls: Sequence[tuple[str, str]]) -> list[tuple[bool, str]]:
        write_frame(out_fd, Kind.CALLS, orjson.dumps(calls))
        message = read_frame(in_fd)
        if message is None:  # the parent is gone: nothing left to do
            os._exit(0)
        kind, payload = message
        if kind is not Kind.REPLIES:
            raise ProtocolError(f"expected REPLIES, got {kind.name}")
        return [(bool(ok), str(text)) for ok, text in orjson.loads(payload)]

    while True:
        message = read_frame(in_fd)
        if message is None:
            return
        kind, payload = message
        if kind is not Kind.RUN:
            raise ProtocolError(f"expected RUN, got {kind.name}")
        request = orjson.loads(payload)
        budget = RunBudget(request["wall_time"], request["memory"], request["fuel"])
        raw = runtime.run(request["code"], request["config"], budget, bridge)
        done = {
            "outcome": raw.outcome_json,
            "trap_kind": raw.trap_kind,
            "trap_message": raw.trap_message,
            "guest_time": raw.guest_time,
            "tool_time": raw.tool_time,
            "fuel_used": raw.fuel_used,
        }
        write_frame(out_fd, Kind.DONE, orjson.dumps(done))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the worker process."""
    args = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    out_fd = os.dup(1)
    os.dup2(2, 1)  # keep the protocol pipe private
    artifact = Path(args[0])
    if not verified(artifact):
        sys.stderr.write(f"sandbox worker: {artifact} is missing or does not match its digest\n")
        return EXIT_BAD_ARTIFACT
    runtime = GuestRuntime(artifact, fuel="--fuel" in args)
    runtime.run("pass", "{}", RunBudget(10.0, 256 << 20, None), lambda calls: [])  # warm the code paths
    write_frame(out_fd, Kind.READY, orjson.dumps({"pid": os.getpid(), "seconds": time.perf_counter() - started}))
    try:
        serve(runtime, 0, out_fd)
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

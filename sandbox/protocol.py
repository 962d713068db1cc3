"""Frames between the hub process and a sandbox worker, over the worker's stdin and stdout pipes.

A frame is a 5-byte header, ``>IB`` (payload length, kind), then the payload (JSON, UTF-8). One run is:

    parent -> RUN {code, config, wall_time, memory, fuel}
    worker -> CALLS [[name, args_json], ...]     (zero or more times, each answered by)
    parent -> REPLIES [[ok, json_or_message], ...]
    worker -> DONE {outcome, trap_kind, trap_message, guest_time, tool_time, fuel_used}

A worker announces itself with READY {pid, seconds} once it has loaded the guest.

The parent does not trust what a worker sends: the program inside can rewrite the guest's own checks. Frames from a
worker are bounded by :func:`worker_frame_limits`, the largest legitimate CALLS and DONE frames for the run's limits,
and the parent refuses a larger one from its header alone, before reading the payload.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Mapping
from typing import Any, cast

import orjson

from sandbox.limits import SandboxLimits

HEADER = struct.Struct(">IB")
MAX_FRAME = 1 << 30
"""The largest frame a worker accepts from its parent (the parent is trusted)."""
READY_LIMIT = 64 << 10
"""The largest READY frame the parent accepts."""
FRAME_MARGIN = 64 << 10
"""Room for a frame's fixed fields (timings, kinds, messages) on top of what the caps account for."""
ESCAPE = 7
"""The most one byte of program text grows to in a DONE frame: JSON escapes it twice, in the guest's outcome and
again as a string field of the frame (a control character becomes ``\\u0001``, then ``\\\\u0001``)."""
NAME_ESCAPE = 6
"""The most one byte of a tool name or of arguments JSON grows to in a CALLS frame, which escapes it once."""
CALL_OVERHEAD = 8
"""The bytes a CALLS frame adds per call (``["name","args"],``)."""


class Kind(enum.IntEnum):
    """Frame kinds."""

    READY = 1
    RUN = 2
    CALLS = 3
    REPLIES = 4
    DONE = 5


class ProtocolError(RuntimeError):
    """A malformed frame or an unexpected kind."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more bytes than its kind may carry."""

    def __init__(self, kind: Kind, length: int, limit: int) -> None:
        super().__init__(f"{kind.name} frame of {length} bytes exceeds its limit of {limit}")
        self.kind = kind
        self.length = length
        self.limit = limit


def frame(kind: Kind, payload: bytes) -> bytes:
    """Encode one frame."""
    return HEADER.pack(len(payload), kind) + payload


def parse_header(header: bytes, limits: Mapping[Kind, int] | None = None) -> tuple[int, Kind]:
    """Decode a frame header into (payload length, kind).

    Args:
        header: the 5 header bytes.
        limits: the kinds expected next, each with its largest payload; default any kind up to ``MAX_FRAME``.

    Raises:
        FrameTooLarge: the payload would exceed its kind's limit.
        ProtocolError: an unknown or unexpected kind.
    """
    length, raw = HEADER.unpack(header)
    try:
        kind = Kind(raw)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {raw}") from None
    if limits is None:
        limit = MAX_FRAME
    elif kind in limits:
        limit = limits[kind]
    else:
        raise ProtocolError(f"unexpected {kind.name} frame")
    if length > limit:
        raise FrameTooLarge(kind, length, limit)
    return length, kind


def worker_frame_limits(limits: SandboxLimits) -> dict[Kind, int]:
    """The frames a worker may send during a run with ``limits``, each with its largest legitimate payload.

    A DONE frame carries stdout, the ``result`` JSON, the error message and the traceback, each within its cap; a
    CALLS frame carries at most ``max_tool_calls`` calls (one, when the budget is 0) whose names and arguments fit
    ``max_tool_args_bytes``.
    """
    texts = limits.max_output_bytes + limits.max_result_bytes + 2 * limits.max_error_bytes
    calls = max(1, limits.max_tool_calls)
    return {
        Kind.CALLS: NAME_ESCAPE * limits.max_tool_args_bytes + CALL_OVERHEAD * calls + FRAME_MARGIN,
        Kind.DONE: ESCAPE * texts + FRAME_MARGIN,
    }


def decode_calls(payload: bytes) -> list[tuple[str, str]]:
    """The ``(name, arguments JSON)`` pairs of a CALLS payload.

    Raises:
        ProtocolError: the payload is not a JSON list of string pairs.
    """
    try:
        decoded: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProtocolError("CALLS payload is not JSON") from None
    if not isinstance(decoded, list):
        raise ProtocolError("CALLS payload is not a list")
    calls: list[tuple[str, str]] = []
    for item in cast("list[Any]", decoded):
        if not isinstance(item, list):
            raise ProtocolError("a call in CALLS is not a [name, arguments] pair")
        pair = cast("list[Any]", item)
        if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], str):
            raise ProtocolError("a call in CALLS is not a [name, arguments] pair")
        calls.append((pair[0], pair[1]))
    return calls


def read_exactly(fd: int, size: int) -> bytes | None:
    """Blocking read of ``size`` bytes from ``fd``; None at end of file."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[Kind, bytes] | None:
    """Blocking read of one frame; None at end of file."""
    header = read_exactly(fd, HEADER.size)
    if header is None:
        return None
    length, kind = parse_header(header)
    payload = read_exactly(fd, length) if length else b""
    if payload is None:
        return None
    return kind, payload


def write_frame(fd: int, kind: Kind, payload: bytes) -> None:
    """Blocking write of one frame."""
    view = memoryview(frame(kind, payload))
    while view:
        written = os.write(fd, view)
        view = view[written:]

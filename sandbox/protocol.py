"""Frames between the hub process and a sandbox worker, over the worker's stdin and stdout pipes.

A frame is a 5-byte header, ``>IB`` (payload length, kind), then the payload (JSON, UTF-8). One run is:

    parent -> RUN {code, config, wall_time, memory, fuel}
    worker -> CALLS [[name, args_json], ...]     (zero or more times, each answered by)
    parent -> REPLIES [[ok, json_or_message], ...]
    worker -> DONE {outcome, trap_kind, trap_message, guest_time, tool_time, fuel_used}

A worker announces itself with READY {pid, seconds} once it has loaded the guest.
"""

from __future__ import annotations

import enum
import os
import struct

HEADER = struct.Struct(">IB")
MAX_FRAME = 1 << 30


class Kind(enum.IntEnum):
    """Frame kinds."""

    READY = 1
    RUN = 2
    CALLS = 3
    REPLIES = 4
    DONE = 5


class ProtocolError(RuntimeError):
    """A malformed frame or an unexpected kind."""


def frame(kind: Kind, payload: bytes) -> bytes:
    """Encode one frame."""
    return HEADER.pack(len(payload), kind) + payload


def parse_header(header: bytes) -> tuple[int, Kind]:
    """Decode a frame header into (payload length, kind)."""
    length, raw = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit")
    try:
        return length, Kind(raw)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {raw}") from None


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

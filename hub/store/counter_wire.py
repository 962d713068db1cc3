"""The counter server's wire format: length-prefixed binary frames on a persistent Unix stream connection.

Binary rather than JSON because every governed call crosses it twice when the hub runs several workers: packing a
few integers with `struct` costs a fraction of encoding and parsing JSON, and a fixed layout leaves no room for
ambiguity in what a malformed frame is.

Every frame is `u32 size` (big-endian, the bytes that follow) and a body of at most `MAX_FRAME` bytes.

Request body: `u8 op | u32 request id | fields`. `RESEND` (0x80) added to the op marks a frame sent again on a new
connection after the first one broke before its answer came back; the server then answers a reserve or settle it
already applied with the answer it gave, instead of applying it twice.

```
RESERVE  f64 now, f64 lease, str hold_id, u16 n, n x slot      slot = str key, i64 limit, i64 amount, f64 ttl
SETTLE   f64 now, str hold_id, u16 n, n x slot
READ     f64 now, u16 n, n x str key
RESET    f64 now, u16 n, n x str key
```

`str` is `u16 size | UTF-8`. Answer body: `u32 request id | u8 status | fields`:

```
OK, to RESERVE        i32 refused (-1 = granted), u16 n, n x (i64 used, i64 held)
OK, to READ           u16 n, n x (i64 used, i64 held)
OK, to SETTLE, RESET  nothing
ERROR                 str message
```

Stdlib only: the server side runs in the supervisor process, whose memory is budgeted.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import NamedTuple

from hub.governance.counters import Slot, SlotValue

__all__ = [
    "ENVIRONMENT",
    "ERROR",
    "MAX_FRAME",
    "OK",
    "OK_PAYLOAD",
    "READ",
    "RESEND",
    "RESERVE",
    "RESET",
    "SETTLE",
    "Malformed",
    "Request",
    "answer",
    "answer_id",
    "decode_request",
    "encode_keys",
    "encode_reserve",
    "encode_settle",
    "error_message",
    "error_payload",
    "resent",
    "split_frames",
    "values_of",
    "values_payload",
]

ENVIRONMENT = "AGENTHUB_COUNTERS_SOCKET"
"""The variable that tells a worker the path of the supervisor's counter server."""

RESERVE, SETTLE, READ, RESET = 1, 2, 3, 4
RESEND = 0x80
OK, ERROR = 0, 1
MAX_FRAME = 1 << 20
"""Largest body either side accepts (a reservation over thousands of slots still fits)."""

_SIZE = struct.Struct(">I")
_HEAD = struct.Struct(">IBI")  # size, op, request id
_ANSWER_HEAD = struct.Struct(">II")  # size, request id
_U16 = struct.Struct(">H")
_F64 = struct.Struct(">d")
_RESERVE_HEAD = struct.Struct(">ddH")  # now, lease, hold id size
_NOW_COUNT = struct.Struct(">dH")  # now, then a string's size (SETTLE) or the number of keys (READ, RESET)
_NUMBERS = struct.Struct(">qqd")
_PAIR = struct.Struct(">qq")
_REFUSED = struct.Struct(">BiH")  # status, refused, n
_COUNT = struct.Struct(">BH")  # status, n


class Malformed(ValueError):
    """A frame that does not follow the wire format; the connection that sent it is closed."""


class Request(NamedTuple):
    """One decoded request."""

    op: int
    resend: bool
    rid: int
    now: float
    lease: float
    hold_id: str
    slots: tuple[Slot, ...]
    keys: tuple[str, ...]


# -- framing --------------------------------------------------------------------------------------------------


def split_frames(buffer: bytearray) -> list[bytes]:
    """Cut every complete frame's body off the front of `buffer`, leaving a partial frame in it.

    Frames before a bad size are returned first (call again until it returns nothing).

    Raises:
        Malformed: the first frame has a size of zero or above `MAX_FRAME`.
    """
    bodies: list[bytes] = []
    start = 0
    end = len(buffer)
    while end - start >= 4:
        (size,) = _SIZE.unpack_from(buffer, start)
        if size == 0 or size > MAX_FRAME:
            if bodies:  # the frames before it first; the next call raises
                break
            raise Malformed(f"frame size {size} is outside 1..{MAX_FRAME}")
        if end - start - 4 < size:
            break
        bodies.append(bytes(buffer[start + 4 : start + 4 + size]))
        start += 4 + size
    if start:
        del buffer[:start]
    return bodies


def _frame(parts: list[bytes], op: int, rid: int) -> bytes:
    parts[0] = _HEAD.pack(sum(map(len, parts)) + 5, op, rid)
    return b"".join(parts)


def resent(frame: bytes) -> bytes:
    """The same request frame marked `RESEND`."""
    return frame[:4] + bytes((frame[4] | RESEND,)) + frame[5:]


# -- requests (worker side) -------------------------------------------------------------------------------------


def _text(parts: list[bytes], value: str) -> None:
    data = value.encode()
    parts += (_U16.pack(len(data)), data)


def _slots(parts: list[bytes], slots: Sequence[Slot]) -> None:
    parts.append(_U16.pack(len(slots)))
    for key, limit, amount, ttl in slots:
        data = key.encode()
        parts += (_U16.pack(len(data)), data, _NUMBERS.pack(limit, amount, ttl))


def encode_reserve(rid: int, slots: Sequence[Slot], *, hold_id: str, now: float, lease: float) -> bytes:
    """A RESERVE request frame."""
    hold = hold_id.encode()
    parts = [b"", _RESERVE_HEAD.pack(now, lease, len(hold)), hold]
    _slots(parts, slots)
    return _frame(parts, RESERVE, rid)


def encode_settle(rid: int, slots: Sequence[Slot], *, hold_id: str, now: float) -> bytes:
    """A SETTLE request frame."""
    parts = [b"", _F64.pack(now)]
    _text(parts, hold_id)
    _slots(parts, slots)
    return _frame(parts, SETTLE, rid)


def encode_keys(op: int, rid: int, keys: Sequence[str], *, now: float) -> bytes:
    """A READ or RESET request frame."""
    parts = [b"", _F64.pack(now), _U16.pack(len(keys))]
    for key in keys:
        _text(parts, key)
    return _frame(parts, op, rid)


# -- requests (server side) -------------------------------------------------------------------------------------


def _string(body: bytes, at: int, size: int) -> str:
    end = at + size
    if end > len(body):
        raise Malformed(f"a string of {size} bytes runs past the frame")
    try:
        return body[at:end].decode()
    except UnicodeDecodeError as exc:
        raise Malformed(f"a string is not UTF-8: {exc.reason}") from None


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise Malformed(f"{what} is not finite: {value}")
    return value


def _slots_from(body: bytes, at: int) -> tuple[tuple[Slot, ...], int]:
    (count,) = _U16.unpack_from(body, at)
    at += 2
    slots: list[Slot] = []
    for _ in range(count):
        (size,) = _U16.unpack_from(body, at)
        key = _string(body, at + 2, size)
        at += 2 + size
        limit, amount, ttl = _NUMBERS.unpack_from(body, at)
        at += _NUMBERS.size
        slots.append(Slot(key, limit, amount, _finite(ttl, "a ttl")))
    return tuple(slots), at


def _keys_from(body: bytes, at: int, count: int) -> tuple[tuple[str, ...], int]:
    keys: list[str] = []
    for _ in range(count):
        (size,) = _U16.unpack_from(body, at)
        keys.append(_string(body, at + 2, size))
        at += 2 + size
    return tuple(keys), at


def decode_request(body: bytes) -> Request:
    """Parse a request body (as cut by `split_frames`).

    Raises:
        Malformed: an unknown operation, a truncated or overlong body, a string that is not UTF-8, a time that is
            not finite.
    """
    if len(body) < 5:
        raise Malformed(f"a request of {len(body)} bytes has no header")
    code = body[0]
    op = code & ~RESEND
    rid = int.from_bytes(body[1:5])
    lease = 0.0
    hold_id = ""
    slots: tuple[Slot, ...] = ()
    keys: tuple[str, ...] = ()
    try:
        if op == RESERVE:
            now, lease, size = _RESERVE_HEAD.unpack_from(body, 5)
            hold_id = _string(body, 5 + _RESERVE_HEAD.size, size)
            slots, at = _slots_from(body, 5 + _RESERVE_HEAD.size + size)
            _finite(lease, "the lease")
        elif op == SETTLE:
            now, size = _NOW_COUNT.unpack_from(body, 5)
            hold_id = _string(body, 5 + _NOW_COUNT.size, size)
            slots, at = _slots_from(body, 5 + _NOW_COUNT.size + size)
        elif op == READ or op == RESET:
            now, count = _NOW_COUNT.unpack_from(body, 5)
            keys, at = _keys_from(body, 5 + _NOW_COUNT.size, count)
        else:
            raise Malformed(f"unknown operation {code}")
    except struct.error:
        raise Malformed("the frame ends early") from None
    _finite(now, "a time")
    if at != len(body):
        raise Malformed(f"{len(body) - at} bytes after the request")
    return Request(op, bool(code & RESEND), rid, now, lease, hold_id, slots, keys)


# -- answers ----------------------------------------------------------------------------------------------------


def answer(rid: int, payload: bytes) -> bytes:
    """An answer frame: `payload` is the status and fields (the part the server keeps for a resend)."""
    return _ANSWER_HEAD.pack(len(payload) + 4, rid) + payload


def values_payload(values: Sequence[SlotValue], refused: int | None = None) -> bytes:
    """The payload of an OK answer to RESERVE (with `refused`) or READ (without)."""
    head = _COUNT.pack(OK, len(values)) if refused is None else _REFUSED.pack(OK, refused, len(values))
    return head + b"".join([_PAIR.pack(used, held) for used, held in values])


def error_payload(message: str) -> bytes:
    """The payload of an ERROR answer."""
    data = message.encode()[:4096]
    return bytes((ERROR,)) + _U16.pack(len(data)) + data


OK_PAYLOAD = bytes((OK,))
"""The payload of an OK answer to SETTLE or RESET."""


def answer_id(body: bytes) -> int:
    """The request id an answer body answers."""
    return int.from_bytes(body[:4])


def error_message(body: bytes) -> str | None:
    """The message of an ERROR answer body, or None when it is OK.

    Raises:
        Malformed: a status that is neither, or a truncated message.
    """
    status = body[4] if len(body) > 4 else -1
    if status == OK:
        return None
    if status != ERROR:
        raise Malformed(f"answer status {status}")
    try:
        (size,) = _U16.unpack_from(body, 5)
    except struct.error:
        raise Malformed("the frame ends early") from None
    return _string(body, 7, size)


def values_of(body: bytes, *, refused: bool) -> tuple[int, tuple[SlotValue, ...]]:
    """The refused index (-1 when `refused` is False) and slot values of an OK answer to RESERVE or READ.

    Raises:
        Malformed: a truncated answer.
    """
    try:
        if refused:
            _, index, count = _REFUSED.unpack_from(body, 4)
            at = 4 + _REFUSED.size
        else:
            index = -1
            _, count = _COUNT.unpack_from(body, 4)
            at = 4 + _COUNT.size
    except struct.error:
        raise Malformed("the frame ends early") from None
    if len(body) != at + count * _PAIR.size:
        raise Malformed(f"an answer of {len(body)} bytes does not hold {count} values")
    return index, tuple([SlotValue(*_PAIR.unpack_from(body, at + i * _PAIR.size)) for i in range(count)])

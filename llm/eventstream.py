"""The AWS event-stream binary framing (used by Bedrock ConverseStream), with CRC32 checks both ways.

A message is: total length (u32), headers length (u32), prelude CRC (u32 over the first 8 bytes), headers,
payload, message CRC (u32 over everything before it). All integers are big-endian. A header is: name length
(u8), name, value type (u8), value. Types: 0/1 bool true/false, 2 byte, 3 short, 4 int, 5 long, 6 bytes
(u16 length), 7 string (u16 length), 8 timestamp (i64 ms), 9 uuid (16 bytes).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from llm.errors import ProviderResponseError

__all__ = ["EventMessage", "EventStreamDecoder", "encode_event"]

HeaderValue = str | bytes | int | bool

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_MAX_MESSAGE = 16 * 1024 * 1024
_FIXED = {2: (1, ">b"), 3: (2, ">h"), 4: (4, ">i"), 5: (8, ">q"), 8: (8, ">q")}


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded message: its headers and raw payload."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str:
        """A string header's value, or "" when absent or not a string."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""


class EventStreamDecoder:
    """Feed byte chunks; get complete, CRC-checked messages back. Corrupt framing raises ProviderResponseError."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[EventMessage]:
        """Consume `chunk`; return the messages it completed."""
        self._buf += chunk
        out: list[EventMessage] = []
        buf = self._buf
        offset = 0
        while len(buf) - offset >= 12:
            total, headers_len = _PRELUDE.unpack_from(buf, offset)
            if zlib.crc32(buf[offset : offset + 8]) != _U32.unpack_from(buf, offset + 8)[0]:
                raise ProviderResponseError("event stream prelude checksum mismatch")
            if total < 16 or total > _MAX_MESSAGE or headers_len > total - 16:
                raise ProviderResponseError("event stream message has an invalid length")
            if len(buf) - offset < total:
                break
            end = offset + total
            if zlib.crc32(buf[offset : end - 4]) != _U32.unpack_from(buf, end - 4)[0]:
                raise ProviderResponseError("event stream message checksum mismatch")
            headers = _decode_headers(bytes(buf[offset + 12 : offset + 12 + headers_len]))
            out.append(EventMessage(headers, bytes(buf[offset + 12 + headers_len : end - 4])))
            offset = end
        del buf[:offset]
        return out

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)


def _decode_headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    i = 0
    try:
        while i < len(raw):
            name_len = raw[i]
            name = raw[i + 1 : i + 1 + name_len].decode()
            i += 1 + name_len
            kind = raw[i]
            i += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                size, fmt = _FIXED[kind]
                value = struct.unpack_from(fmt, raw, i)[0]
                i += size
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", raw, i)
                data = raw[i + 2 : i + 2 + length]
                if len(data) != length:
                    raise ValueError("truncated header")
                value = data.decode() if kind == 7 else data
                i += 2 + length
            elif kind == 9:
                value = raw[i : i + 16]
                i += 16
            else:
                raise ValueError("unknown header type")
            headers[name] = value
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        raise ProviderResponseError("event stream headers are malformed") from None
    return headers


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """Encode one message with string headers (what a fake server needs)."""
    raw_headers = bytearray()
    for name, value in headers.items():
        n = name.encode()
        v = value.encode()
        raw_headers += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(raw_headers))
    head = prelude + _U32.pack(zlib.crc32(prelude)) + bytes(raw_headers) + payload
    return head + _U32.pack(zlib.crc32(head))

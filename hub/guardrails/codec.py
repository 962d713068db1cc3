"""Decoding passes: find percent, hex, base64 and unicode-escape segments, decode them in place.

Gitleaks rescans a fragment after replacing encoded segments with their decoded value (printable
ASCII only), up to a maximum depth, and reports in a pass only matches that overlap a segment
decoded in that pass. :class:`DecodePass` keeps the segment table so that a span found in the
decoded text maps back to the encoded bytes of the original.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import re2

__all__ = ["DecodePass", "Segment", "decode_pass"]

# One alternation, most specific first; the group that matched names the encoding. Precedence
# decides between touching segments: the lower one waits for the next pass.
_ENCODINGS: tuple[tuple[str, int], ...] = (("unicode", 4), ("percent", 3), ("hex", 2), ("base64", 1))
_FINDER = re2.compile(
    rb"((?:\\{1,2}[uU][0-9A-Fa-f]{4})+)|((?:%[0-9A-Fa-f]{2})+)|([0-9A-Fa-f]{32,})|([\w/+-]{16,}={0,3})"
)
_UNICODE_ESCAPE = re2.compile(rb"\\{1,2}[uU]([0-9A-Fa-f]{4})")
_BASE64_HINT = frozenset(b"0123456789+/-_")
_HEX_HINT = frozenset(b"0123456789")


@dataclass(frozen=True, slots=True)
class Segment:
    """An encoded span of the previous text and where its decoded value sits in the new text."""

    encoded_start: int
    encoded_end: int
    decoded_start: int
    decoded_end: int
    encoding: str


@dataclass(frozen=True, slots=True)
class DecodePass:
    """The text after one decoding pass and its segments (empty when nothing decoded)."""

    data: bytes
    segments: tuple[Segment, ...]

    def overlapping(self, start: int, end: int) -> list[Segment]:
        """Segments whose decoded value overlaps ``[start, end)`` of the new text."""
        return [s for s in self.segments if s.decoded_start < end and start < s.decoded_end]

    def to_previous(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of the decoded text to the previous text, widening to whole segments."""
        return self._map(start, is_end=False), self._map(end, is_end=True)

    def _map(self, pos: int, *, is_end: bool) -> int:
        shift = 0
        for seg in self.segments:
            if pos < seg.decoded_start or (is_end and pos == seg.decoded_start):
                break
            if pos < seg.decoded_end or (is_end and pos == seg.decoded_end):
                return seg.encoded_end if is_end else seg.encoded_start
            shift = seg.encoded_end - seg.decoded_end
        return pos + shift


def _printable(data: bytes) -> bool:
    return bool(data) and all(32 <= b < 127 or b in (9, 10, 13) for b in data)


def _decode_percent(raw: bytes) -> bytes:
    out = bytes(int(raw[i + 1 : i + 3], 16) for i in range(0, len(raw), 3))
    return out if _printable(out) else b""


def _decode_hex(raw: bytes) -> bytes:
    if len(raw) % 2 or not _HEX_HINT.intersection(raw):
        return b""
    out = binascii.unhexlify(raw)
    return out if _printable(out) else b""


def _decode_base64(raw: bytes) -> bytes:
    if not _BASE64_HINT.intersection(raw):
        return b""
    candidates = [raw]  # standard alphabet, padded
    if not raw.count(b"=") and b"+" not in raw and b"/" not in raw and len(raw) % 4 != 1:
        candidates.append(raw.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(raw) % 4))  # raw URL
    for candidate in candidates:
        try:
            out = base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            continue
        if _printable(out):
            return out
    return b""


def _decode_unicode(raw: bytes) -> bytes:
    chars = "".join(chr(int(raw[m.start(1) : m.end(1)], 16)) for m in _UNICODE_ESCAPE.finditer(raw))
    out = chars.encode("utf-8", errors="ignore")
    return out if out != raw else b""


_DECODERS = {"unicode": _decode_unicode, "percent": _decode_percent, "hex": _decode_hex, "base64": _decode_base64}


def decode_pass(data: bytes, cache: dict[bytes, bytes] | None = None) -> DecodePass:
    """Decode every encoded segment of ``data`` once (one gitleaks decoding pass)."""
    matches: list[tuple[int, int, str, int]] = []
    for m in _FINDER.finditer(data):
        for index, (name, precedence) in enumerate(_ENCODINGS, start=1):
            if m.start(index) >= 0:
                matches.append((m.start(), m.end(), name, precedence))
                break
    if not matches:
        return DecodePass(data, ())
    memo: dict[bytes, bytes] = {} if cache is None else cache
    parts: list[bytes] = []
    segments: list[Segment] = []
    cursor = 0
    shift = 0
    for i, (start, end, name, precedence) in enumerate(matches):
        touching_higher = (i > 0 and matches[i - 1][1] == start and matches[i - 1][3] > precedence) or (
            i + 1 < len(matches) and matches[i + 1][0] == end and matches[i + 1][3] > precedence
        )
        if touching_higher:
            continue
        raw = data[start:end]
        decoded = memo.get(raw)
        if decoded is None:
            decoded = _DECODERS[name](raw)
            memo[raw] = decoded
        if not decoded:
            continue
        parts.append(data[cursor:start])
        parts.append(decoded)
        cursor = end
        segments.append(Segment(start, end, start + shift, start + shift + len(decoded), name))
        shift += len(decoded) - (end - start)
    if not segments:
        return DecodePass(data, ())
    parts.append(data[cursor:])
    return DecodePass(b"".join(parts), tuple(segments))

"""Text helpers shared by the local engines: hits, invisible-character folding and redaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Folded",
    "Hit",
    "RedactionStyle",
    "byte_to_char_offsets",
    "fold_invisible",
    "merge_spans",
    "redact",
]

RedactionStyle = Literal["placeholder", "mask"]

# Characters that render as nothing and are used to split a secret so that a pattern misses it:
# zero-width space/non-joiner/joiner, word joiner, invisible operators, BOM, soft hyphen,
# Mongolian vowel separator, and the Unicode tag block (U+E0000-U+E007F).
_INVISIBLE = frozenset(
    [0x00AD, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF]
    + list(range(0xE0000, 0xE0080))
)


@dataclass(frozen=True, slots=True)
class Hit:
    """One detection by a local engine, with the span to redact in the scanned text.

    ``label`` is the type shown in a placeholder (``[REDACTED:<label>]``); ``rule`` names what
    fired (a gitleaks rule id, a PII entity, a pattern name). Hits never carry the matched value.
    """

    rule: str
    label: str
    start: int
    end: int
    detail: dict[str, str | float | int] = field(default_factory=lambda: {})


@dataclass(frozen=True, slots=True)
class Folded:
    """A text with invisible characters removed and the map back to the original offsets."""

    text: str
    positions: tuple[int, ...] | None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a ``[start, end)`` span of the folded text to the original text."""
        if self.positions is None:
            return start, end
        pos = self.positions
        return pos[start], (pos[end - 1] + 1 if end > start else pos[start])


def fold_invisible(text: str) -> Folded:
    """Drop zero-width and other invisible format characters, keeping an offset map.

    Text without such characters (the common case) is returned as is, with no map.
    """
    if text.isascii() or not any(ord(ch) in _INVISIBLE for ch in text):
        return Folded(text, None)
    kept: list[str] = []
    positions: list[int] = []
    for index, ch in enumerate(text):
        if ord(ch) not in _INVISIBLE:
            kept.append(ch)
            positions.append(index)
    positions.append(len(text))
    return Folded("".join(kept), tuple(positions))


def byte_to_char_offsets(data: bytes, offsets: Iterable[int]) -> dict[int, int]:
    """Convert UTF-8 byte offsets of ``data`` into character offsets."""
    wanted = sorted(set(offsets))
    if data.isascii():
        return {o: o for o in wanted}
    result: dict[int, int] = {}
    chars = 0
    previous = 0
    for offset in wanted:
        chars += len(data[previous:offset].decode("utf-8", errors="ignore"))
        # A UTF-8 continuation byte at the offset means it splits a character; count it whole.
        result[offset] = chars
        previous = offset
    return result


def merge_spans(spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Sort spans and merge overlapping ones (the first label of a merged run is kept)."""
    merged: list[tuple[int, int, str]] = []
    for start, end, label in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, label))
    return merged


def redact(
    text: str,
    hits: Sequence[Hit],
    *,
    style: RedactionStyle = "placeholder",
    mask_char: str = "*",
    keep_last: int = 0,
) -> str:
    """Replace every hit's span with ``[REDACTED:<label>]`` or with a mask of equal length."""
    if not hits:
        return text
    parts: list[str] = []
    cursor = 0
    for start, end, label in merge_spans((h.start, h.end, h.label) for h in hits):
        parts.append(text[cursor:start])
        if style == "placeholder":
            parts.append(f"[REDACTED:{label}]")
        else:
            value = text[start:end]
            keep = min(keep_last, max(len(value) - 4, 0))
            parts.append(mask_char * (len(value) - keep) + (value[len(value) - keep :] if keep else ""))
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)

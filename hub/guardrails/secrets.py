"""Secret detection: the gitleaks rules on RE2 behind an Aho-Corasick keyword prefilter."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import ahocorasick

from .codec import DecodePass, decode_pass
from .gitleaks import GitleaksRuleset, SecretRule, default_ruleset
from .text import Hit, byte_to_char_offsets

__all__ = ["SecretScanner", "shannon_entropy"]

ALLOW_SIGNATURE = "gitleaks:allow"


def shannon_entropy(secret: str) -> float:
    """Gitleaks' entropy: Shannon entropy over characters, frequencies taken per UTF-8 byte."""
    if not secret:
        return 0.0
    size = len(secret.encode())
    return -sum((n / size) * math.log2(n / size) for n in Counter(secret).values())


@dataclass(frozen=True, slots=True)
class _RawHit:
    rule: SecretRule
    start: int  # byte offsets in the original text
    end: int
    entropy: float
    encodings: tuple[str, ...]


class SecretScanner:
    """Scan text with a gitleaks rule set, as ``gitleaks detect`` scans one fragment.

    Args:
        ruleset: compiled rules and global allowlists (default: the bundled gitleaks set).
        max_decode_depth: decoding passes over base64/hex/percent/unicode segments (gitleaks: 5).
        path_scoped_rules: also run rules that gitleaks limits to file paths (``*.tf``, ``*.yaml``...);
            a gateway payload has no path, so gitleaks semantics leave them off.
        honor_allow_comment: skip lines carrying ``gitleaks:allow``. Off by default: in a gateway the
            sender of the text controls the comment.
    """

    def __init__(
        self,
        ruleset: GitleaksRuleset | None = None,
        *,
        max_decode_depth: int = 5,
        path_scoped_rules: bool = False,
        honor_allow_comment: bool = False,
    ) -> None:
        self.ruleset = ruleset or default_ruleset()
        self.max_decode_depth = max_decode_depth
        self.honor_allow_comment = honor_allow_comment
        self.rules = tuple(r for r in self.ruleset.rules if path_scoped_rules or not r.path_scoped)
        self._always = tuple(i for i, r in enumerate(self.rules) if not r.keywords)
        trie: Any = ahocorasick.Automaton()
        by_keyword: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            for keyword in rule.keywords:
                by_keyword.setdefault(keyword, []).append(index)
        for keyword, indices in by_keyword.items():
            trie.add_word(keyword, tuple(indices))
        if by_keyword:
            trie.make_automaton()
        self._trie: Any = trie if by_keyword else None

    def candidates(self, lowered: str) -> list[SecretRule]:
        """Rules whose keywords occur in ``lowered`` (plus rules without keywords), in rule order."""
        selected: set[int] = set(self._always)
        if self._trie is not None:
            for _end, indices in self._trie.iter(lowered):
                selected.update(indices)
        return [self.rules[i] for i in sorted(selected)]

    def scan(self, text: str) -> list[Hit]:
        """Findings in ``text``; each hit's span is the secret (or the encoded segment holding it)."""
        original = text.encode("utf-8", errors="surrogatepass")
        raw_hits: list[_RawHit] = []
        passes: list[DecodePass] = []
        current = original
        memo: dict[bytes, bytes] = {}
        depth = 0
        while True:
            raw_hits.extend(self._scan_pass(current, passes))
            depth += 1
            if depth > self.max_decode_depth:
                break
            step = decode_pass(current, memo)
            if not step.segments:
                break
            passes.append(step)
            current = step.data
        return self._to_hits(original, raw_hits)

    def _scan_pass(self, data: bytes, passes: list[DecodePass]) -> list[_RawHit]:
        lowered = data.decode("utf-8", errors="replace").lower()
        found: list[_RawHit] = []
        for rule in self.candidates(lowered):
            for m in rule.regex.finditer(data):
                hit = self._check_match(rule, data, m.start(), m.end(), passes)
                if hit is not None:
                    found.append(hit)
        return found

    def _check_match(
        self, rule: SecretRule, data: bytes, start: int, end: int, passes: list[DecodePass]
    ) -> _RawHit | None:
        matched = data[start:end]
        stripped = matched.lstrip(b"\n")
        start += len(matched) - len(stripped)
        matched = stripped.rstrip(b"\n")
        end = start + len(matched)
        encodings: tuple[str, ...] = ()
        if passes:
            overlapping = passes[-1].overlapping(start, end)
            if not overlapping:
                return None  # already seen in an earlier pass
            encodings = tuple(sorted({s.encoding for s in overlapping}))
        line_start = data.rfind(b"\n", 0, start) + 1
        line_end = data.find(b"\n", end)
        line = data[line_start : len(data) if line_end < 0 else line_end].decode("utf-8", errors="replace")
        if self.honor_allow_comment and ALLOW_SIGNATURE in line:
            return None
        s_start, s_end = self._secret_span(rule, matched)
        secret = matched[s_start:s_end].decode("utf-8", errors="replace")
        entropy = shannon_entropy(secret)
        if rule.entropy and entropy <= rule.entropy:
            return None
        match_text = matched.decode("utf-8", errors="replace")
        for allowlist in (*self.ruleset.allowlists, *rule.allowlists):
            if allowlist.allows(secret, match_text, line):
                return None
        abs_start, abs_end = start + s_start, start + s_end
        for step in reversed(passes):
            abs_start, abs_end = step.to_previous(abs_start, abs_end)
        return _RawHit(rule, abs_start, abs_end, entropy, encodings)

    @staticmethod
    def _secret_span(rule: SecretRule, matched: bytes) -> tuple[int, int]:
        """Gitleaks re-runs the rule on the match and takes the secret group (or first non-empty)."""
        again = rule.regex.search(matched)
        if again is None or rule.regex.groups == 0:
            return 0, len(matched)
        if rule.secret_group:
            return again.span(rule.secret_group) if again.start(rule.secret_group) >= 0 else (0, len(matched))
        for group in range(1, rule.regex.groups + 1):
            g_start, g_end = again.span(group)
            if g_start >= 0 and g_end > g_start:
                return g_start, g_end
        return 0, len(matched)

    @staticmethod
    def _to_hits(original: bytes, raw_hits: list[_RawHit]) -> list[Hit]:
        if not raw_hits:
            return []
        chars = byte_to_char_offsets(original, [o for h in raw_hits for o in (h.start, h.end)])
        seen: set[tuple[str, int, int]] = set()
        hits: list[Hit] = []
        for raw in raw_hits:
            key = (raw.rule.id, raw.start, raw.end)
            if key in seen:
                continue
            seen.add(key)
            detail: dict[str, str | float | int] = {"entropy": round(raw.entropy, 3)}
            if raw.encodings:
                detail["decoded"] = "+".join(raw.encodings)
            hits.append(Hit(raw.rule.id, raw.rule.id, chars[raw.start], chars[raw.end], detail))
        return hits

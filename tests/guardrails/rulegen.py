"""Generate strings from a gitleaks (RE2) pattern, as gitleaks' own rule tests generate secrets.

The pattern is parsed with the standard library's regex parser after light rewriting (scoped
flags, POSIX classes), then walked with a seeded RNG: character classes draw random members (so
secrets get high entropy), lazy context repeats take their minimum, alternations pick a branch.
"""

from __future__ import annotations

import random
import re
import string
from re import _constants as C, _parser as P  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue]
from typing import Any

_POSIX = {
    "[:alnum:]": "a-zA-Z0-9",
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:lower:]": "a-z",
    "[:upper:]": "A-Z",
    "[:xdigit:]": "0-9A-Fa-f",
    "[:word:]": "\\w",
    "[:space:]": "\\s",
    "[:punct:]": "!-/:-@\\[-`{-~",
}
_ALNUM = string.ascii_letters + string.digits
_CATEGORY = {
    C.CATEGORY_DIGIT: string.digits,
    C.CATEGORY_WORD: _ALNUM + "_",
    C.CATEGORY_SPACE: " ",
    C.CATEGORY_NOT_DIGIT: string.ascii_letters,
    C.CATEGORY_NOT_WORD: " .,;",
    C.CATEGORY_NOT_SPACE: _ALNUM,
}
_PRINTABLE = [chr(c) for c in range(32, 127)]


def to_python(pattern: str) -> str:
    """Rewrite RE2 syntax that Python's parser refuses into an equivalent for generation."""
    out = pattern
    for posix, ranges in _POSIX.items():
        out = out.replace(posix, ranges)
    out = re.sub(r"\(\?[imsU-]+\)", "", out)  # mid-pattern flags: generation keeps literal case
    out = re.sub(r"\(\?[imsU-]+:", "(?:", out)
    out = out.replace("\\z", "")
    return re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: f"\\x{int(m.group(1), 16):02x}", out)


def with_keyword(sample: str, keywords: tuple[str, ...]) -> str:
    """Gitleaks runs a rule only when a keyword occurs; put one on the line above if needed."""
    if not keywords or any(k in sample.lower() for k in keywords):
        return sample
    return f"# {keywords[0]}\n{sample}"


class Generator:
    """Draw strings matching a pattern; ``seed`` makes the draw reproducible."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._repeats = 0

    def generate(self, pattern: str) -> str:
        return self._seq(P.parse(to_python(pattern)))

    def _seq(self, items: Any) -> str:
        return "".join(self._item(op, av) for op, av in items)

    def _class(self, items: Any) -> list[str]:
        negate = False
        chars: set[str] = set()
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                chars.add(chr(av))
            elif op is C.RANGE:
                chars.update(chr(c) for c in range(av[0], min(av[1], 126) + 1))
            elif op is C.CATEGORY:
                chars.update(_CATEGORY[av])
        if negate:
            return [c for c in _ALNUM if c not in chars] or [c for c in _PRINTABLE if c not in chars]
        return sorted(chars)

    def _item(self, op: Any, av: Any) -> str:
        rng = self.rng
        if op is C.LITERAL:
            return chr(av)
        if op is C.NOT_LITERAL:
            return rng.choice([c for c in _ALNUM if ord(c) != av])
        if op is C.ANY:  # a lone `.` is nearly always a literal dot written unescaped (domains)
            return rng.choice(_ALNUM) if self._repeats else "."
        if op is C.IN:
            return rng.choice(self._class(av))
        if op is C.CATEGORY:
            return rng.choice(_CATEGORY[av])
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, sub = av
            high = low + 40 if high is C.MAXREPEAT else high
            if op is C.MIN_REPEAT or low == high:
                count = low
            else:
                count = rng.randint(low, min(high, low + max(8, (high - low) // 3)))
            self._repeats += 1
            try:
                return "".join(self._seq(sub) for _ in range(count))
            finally:
                self._repeats -= 1
        if op is C.SUBPATTERN:
            return self._seq(av[-1])
        if op is C.BRANCH:
            return self._seq(rng.choice(av[1]))
        if op is C.AT:
            return ""
        raise ValueError(f"cannot generate {op}")

"""Exposed names: `server__tool`, at most 64 characters of `[A-Za-z0-9_-]`, stable and reversible through a map.

A name that does not fit is shortened and given a short hash suffix of the full original, so two long names
never collide and the same upstream tool always gets the same exposed name.
"""

from __future__ import annotations

import hashlib
import re

SEPARATOR = "__"
MAX_NAME = 64
_BAD = re.compile(r"[^A-Za-z0-9_-]")


def exposed_name(server: str, name: str, *, limit: int = MAX_NAME) -> str:
    """Return the downstream name of an upstream tool or prompt.

    Characters outside `[A-Za-z0-9_-]` become `_`; a name longer than `limit` keeps its head and ends in `-` plus
    8 hex digits of the SHA-256 of `server` and the original name.
    """
    candidate = f"{server}{SEPARATOR}{_BAD.sub('_', name)}"
    if len(candidate) <= limit and candidate == f"{server}{SEPARATOR}{name}":
        return candidate
    digest = hashlib.sha256(f"{server}\0{name}".encode()).hexdigest()[:8]
    if len(candidate) + 9 <= limit:
        return f"{candidate}-{digest}"
    return f"{candidate[: limit - 9]}-{digest}"

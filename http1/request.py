"""The bytes of a request head, checked so that what a caller passes can only ever be one request.

The client owns the framing of what it sends (`Host`, `Content-Length`) and the connection's lifetime (keep-alive),
so a caller may not supply `Host`, `Content-Length`, `Transfer-Encoding` or `Connection`: a second `Host` or
`Content-Length` would make the server and any proxy on the way disagree on where the request ends. Header names
must be tokens, and no name, value, method or target may hold a line break (which would start a header or a
request of its own); values travel as latin-1, and a character outside it is refused with the header's name.

Names are checked once and remembered (a client sends the same few names on every request), and line breaks are
looked for in the joined head, two counts over a few hundred bytes, rather than header by header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from http1.propagation import trace_context

__all__ = ["IDEMPOTENT_METHODS", "RESERVED_HEADERS", "encode_head", "is_idempotent"]

RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
"""Headers the client writes or governs itself; a caller passing one gets a ValueError naming it."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods whose request may be sent again when a connection drops before any answer (RFC 9110, 9.2.2)."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHECKED_LIMIT = 4096
_checked: set[str] = set()
"""Header names and methods already found valid (bounded: past the limit, names are checked every time)."""


def is_idempotent(method: str) -> bool:
    """Whether a request with `method` may be sent once more after a connection dropped without answering."""
    return method in IDEMPOTENT_METHODS


def encode_head(method: str, target: str, host_line: str, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    """`method target HTTP/1.1`, `host_line`, `headers` and the `Content-Length` of a `length`-byte body.

    Raises:
        ValueError: a reserved or malformed header name, a line break in a method, target, name or value, or a
            character outside latin-1 (the message names the header).
    """
    if method not in _checked:
        _check_token(method, "method")
    lines = [f"{method} {target} HTTP/1.1", host_line]
    for name, value in headers:
        if name not in _checked:
            _check_name(name)
        lines.append(f"{name}: {value}")
    for name, value in trace_context.get():  # W3C trace context, set by the hub for this request's context
        lines.append(f"{name}: {value}")
    if length or method in _BODY_METHODS:
        lines.append(f"Content-Length: {length}")
    lines.append("\r\n")
    text = "\r\n".join(lines)
    breaks = len(lines)  # one CRLF between lines, and the one that ends the head
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text or " " in target:
        raise ValueError(_what_breaks(target, lines))
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(_what_is_not_latin1(target, lines)) from None


def _check_token(word: str, what: str) -> None:
    if _TOKEN.fullmatch(word) is None:
        raise ValueError(f"{what} {word!r} is not a valid HTTP token")
    if len(_checked) < _CHECKED_LIMIT:
        _checked.add(word)


def _check_name(name: str) -> None:
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {name!r} is set by the HTTP client and may not be given")
    _check_token(name, "header name")


def _what_breaks(target: str, lines: list[str]) -> str:
    for line in lines[2:-1]:
        name, _, value = line.partition(": ")
        if any(c in value for c in "\r\n\0"):
            return f"header {name!r} holds a line break or NUL"
    return f"request target {target!r} holds a space, a line break or NUL"


def _what_is_not_latin1(target: str, lines: list[str]) -> str:
    for line in lines[2:-1]:
        name, _, value = line.partition(": ")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return f"header {name!r} holds characters outside latin-1"
    return f"request target {target!r} holds characters outside latin-1"

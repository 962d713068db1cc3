"""What a request returns: a whole response, or one whose body is still arriving."""

from __future__ import annotations

import asyncio  # noqa: TID251 - a loop timer on the connection (see http1.client), not a task per read
from dataclasses import dataclass
from typing import TYPE_CHECKING

from http1.errors import HttpError

if TYPE_CHECKING:
    from http1.connection import Connection

__all__ = ["HttpResponse", "StreamedResponse"]


def _first(headers: list[tuple[str, str]], name: str, default: str) -> str:
    for key, value in headers:
        if key == name:
            return value
    return default


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    """Header names in lower case, in the order received (those of interim 1xx responses are not among them)."""
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        """The first value of header `name` (lower case), or `default`."""
        return _first(self.headers, name, default)


class StreamedResponse:
    """A response whose headers arrived; `next_chunk()` returns its body piece by piece (None at the end)."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], conn: Connection) -> None:
        self.status = status
        self.headers = headers
        """Header names in lower case, in the order received."""
        self._conn = conn

    def header(self, name: str, default: str = "") -> str:
        """The first value of header `name` (lower case), or `default`."""
        return _first(self.headers, name, default)

    async def next_chunk(self, timeout: float | None = None) -> bytes | None:
        """The body bytes that arrived since the last call (waiting for some), or None once the body ended.

        Raises:
            TimeoutError: nothing arrived within `timeout` seconds (the connection is closed).
            HttpError: the connection broke, the body is not valid HTTP/1.1 or grew past the pool's limit.
        """
        conn = self._conn
        timer = asyncio.get_running_loop().call_later(timeout, conn.expire) if timeout is not None else None
        try:
            return await conn.next_chunk()
        except (HttpError, TimeoutError):
            raise
        except OSError as exc:
            raise HttpError(str(exc) or type(exc).__name__) from None
        finally:
            if timer is not None:
                timer.cancel()

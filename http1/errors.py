"""What the HTTP/1.1 client raises, as a tree, so a caller can tell a request that never left from one the server
may have acted on:

    ConnectionError
     └── HttpError                        the connection failed, broke, or the answer is not HTTP/1.1
          ├── ConnectFailed               no connection: the request was never sent (safe to send elsewhere)
          ├── RequestMayHaveBeenProcessed sent, then the connection closed before a byte of answer
          └── BodyTooLarge                the response body grew past the pool's `max_body`

    TimeoutError                          the request's deadline passed (it may have been sent)

A request is re-sent by the pool only when it is idempotent and nothing of its answer arrived; every other
failure after sending surfaces as one of the errors above, never as a second request.
"""

from __future__ import annotations

__all__ = ["BodyTooLarge", "ConnectFailed", "HttpError", "RequestMayHaveBeenProcessed"]


class HttpError(ConnectionError):
    """The connection failed, closed early, or the server sent something that is not HTTP/1.1."""


class ConnectFailed(HttpError):
    """No connection could be made (refused, unreachable, TLS refused, no answer in time): nothing was sent."""


class RequestMayHaveBeenProcessed(HttpError):
    """The request was sent, then the connection closed without a byte of answer.

    The server may have acted on it or not (often it had just timed the idle connection out): the pool sends
    such a request again only when it is idempotent; for any other it raises this, and only the caller can
    decide whether repeating it is safe.
    """

    def __init__(self) -> None:
        super().__init__("the server closed the connection without answering; it may have processed the request")


class BodyTooLarge(HttpError):
    """The response body grew past the pool's `max_body`."""

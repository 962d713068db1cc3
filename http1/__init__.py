"""The HTTP/1.1 client both back ends send through (LLM providers, lean MCP sessions). Bottom layer: it imports
nothing of this project."""

from http1.client import (
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    H1Pool,
    HttpError,
    HttpResponse,
    StreamedResponse,
    default_ssl_context,
    ssl_context_for,
)

__all__ = [
    "BodyTooLarge",
    "DEFAULT_MAX_BODY",
    "H1Pool",
    "HttpError",
    "HttpResponse",
    "StreamedResponse",
    "default_ssl_context",
    "ssl_context_for",
]

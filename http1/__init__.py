"""The HTTP/1.1 client both back ends send through (LLM providers, lean MCP sessions). Bottom layer: it imports
nothing of this project."""

from http1.client import (
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    ConnectFailed,
    H1Pool,
    HttpError,
    HttpResponse,
    RequestMayHaveBeenProcessed,
    StreamedResponse,
    default_ssl_context,
    ssl_context_for,
)
from http1.proxy import Proxy, ProxyConfigError, ProxySettings

__all__ = [
    "BodyTooLarge",
    "ConnectFailed",
    "DEFAULT_MAX_BODY",
    "H1Pool",
    "HttpError",
    "HttpResponse",
    "Proxy",
    "ProxyConfigError",
    "ProxySettings",
    "RequestMayHaveBeenProcessed",
    "StreamedResponse",
    "default_ssl_context",
    "ssl_context_for",
]

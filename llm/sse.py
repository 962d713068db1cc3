"""Server-sent events for the LLM providers: the shared decoder (`http1.sse`), speaking this package's errors."""

from __future__ import annotations

from http1.sse import SSEDecoder as _SSEDecoder, SSEEvent, encode_sse
from llm.errors import ProviderResponseError

__all__ = ["SSEDecoder", "SSEEvent", "encode_sse"]


class SSEDecoder(_SSEDecoder):
    """`http1.sse.SSEDecoder` whose oversized event raises `ProviderResponseError` (a provider that never ends a
    line), as every other malformed provider body does."""

    __slots__ = ()

    too_large = ProviderResponseError

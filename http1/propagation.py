"""Trace context that rides along with every request sent from the current context.

The libraries that send through `http1` (the LLM providers, the lean MCP sessions) know nothing of tracing; the
hub, which does, sets `trace_context` for the duration of an upstream request (the W3C `traceparent` and
`tracestate` of its span), and `encode_head` adds them to the head of whatever request that context sends (the
lean MCP sessions also put them in the request's `params._meta`). A context variable, so concurrent calls each
carry their own, and tasks started inside the request inherit it. Unset (no tracing), it costs one lookup per
request.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["trace_context"]

trace_context: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("http1_trace_context", default=())
"""`(name, value)` pairs (`traceparent`, `tracestate`) added to every request head sent in this context."""

"""audit: the outermost stage. Every call, denials and failures included, leaves one request-log row with the
key, operation, target, outcome and latency; recording is a list append, the write happens later in batches.

A row also names the key's team and customer, the model an LLM call asked for, the server and tool of an MCP call
(`locate`, through the registry's map), the upstream's share of the latency and, for a nested call, the loop it
belongs to: the outermost call above it, found through the calls in flight (a nested call runs inside its
parent). Bodies are kept by reference only when `[hub] log_bodies` asks; the flush serialises and redacts them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from hub.audit.bodies import Bodies, BodyMode
from hub.audit.requestlog import LogEntry, RequestLog
from hub.call import Call, Outcome
from hub.errors import HubError, Internal
from hub.executors.stream import ClosingStream
from hub.governance.keys import KeyRing, VirtualKey
from hub.governance.usage import Usage
from hub.pipeline import Handler
from hub.telemetry.metricsconfig import CallObserver

logger = logging.getLogger(__name__)


class AuditStage:
    """Records one request-log row per call (at the end of a stream, for streamed outcomes)."""

    def __init__(
        self,
        log: RequestLog,
        keyring: Callable[[], KeyRing] | None = None,
        *,
        locate: Locate | None = None,
        bodies: BodyMode = "none",
        metrics: CallObserver | None = None,
    ) -> None:
        """`locate`: the (server, name there) an MCP call goes to; `bodies`: which calls keep their bodies;
        `metrics`: told of every call once its row is complete."""
        self._log = log
        self._metrics = metrics
        self._keyring = keyring
        self._locate = locate
        self._all_bodies = bodies == "all"
        self._error_bodies = bodies == "errors"
        self._roots: dict[str, str] = {}
        """The loop of each nested call in flight: the outermost call above it."""

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        started = time.perf_counter()
        entry = self._entry(call)
        deferred = False
        parent = call.parent_id
        if parent is not None:
            entry.loop_id = root = self._roots.get(parent, parent)
            self._roots[call.call_id] = root
        if self._all_bodies:
            entry.bodies = Bodies(call.payload)
        outcome: Outcome | None = None
        try:
            outcome = await call_next(call)
            if entry.key_id is None and outcome.principal is not None:
                _attribute_key(entry, outcome.principal.key)
            if outcome.tool_error:
                entry.outcome = "tool_error"
                self._failed(entry, call)
            _usage(entry, outcome)
            if isinstance(outcome.value, ClosingStream):
                deferred = True
                outcome.value.on_close(self._closer(entry, started, call, outcome))
            elif entry.bodies is not None:
                entry.bodies.response = outcome.value
            return outcome
        except HubError as exc:
            entry.outcome, entry.status, entry.error = exc.code, exc.wire.status, exc.message
            self._attribute(entry, call)
            self._failed(entry, call)
            raise
        except BaseException as exc:
            self._attribute(entry, call)
            self._failed(entry, call)
            if isinstance(exc, Exception):
                logger.exception("unexpected failure in %s %s", call.operation, call.target)
                denied = Internal("internal error")
                entry.outcome, entry.status, entry.error = denied.code, 500, type(exc).__name__
                raise denied from exc
            entry.outcome, entry.status, entry.error = "cancelled", 499, "the caller went away"
            raise
        finally:
            if parent is not None:
                self._roots.pop(call.call_id, None)
            if not deferred:
                entry.latency_ms = round((time.perf_counter() - started) * 1000, 3)
                self._log.record(entry)
                if self._metrics is not None:
                    self._metrics.observe(entry, call, outcome, False)

    def _failed(self, entry: LogEntry, call: Call) -> None:
        """Keep the request of a call that did not end `ok` when `log_bodies = "errors"` (with `all` it is kept
        already)."""
        if self._error_bodies:
            entry.bodies = Bodies(call.payload)

    def _attribute(self, entry: LogEntry, call: Call) -> None:
        """Who made a refused or failed call that came with only a credential (its key, if the key is one)."""
        if entry.key_id is None and call.credential and self._keyring is not None:
            key = self._keyring().verify(call.credential)
            if key is not None:
                _attribute_key(entry, key)

    def _entry(self, call: Call) -> LogEntry:
        key = call.principal.key if call.principal else None
        operation = call.operation
        entry = LogEntry(
            ts=datetime.now(UTC),
            call_id=call.call_id,
            parent_id=call.parent_id,
            key_id=key.id if key else None,
            key_name=key.name if key else None,
            door=call.door,
            operation=operation,
            target=call.target,
            outcome="ok",
            status=200,
            latency_ms=0.0,
            error=None,
            team=key.team if key else None,
            customer=key.customer if key else None,
            model=call.target if operation in _MODEL_OPERATIONS else None,
        )
        if operation in _LOCATED_OPERATIONS and self._locate is not None:
            found = self._locate(call)
            if found is not None:
                entry.server, entry.tool = found
        return entry

    def _closer(
        self, entry: LogEntry, started: float, call: Call, outcome: Outcome
    ) -> Callable[[ClosingStream], Awaitable[None]]:
        """Record a stream's row when it ends: how it ended, its final usage and its whole duration."""

        async def close(stream: ClosingStream) -> None:
            if stream.failure is not None:
                failure = stream.failure
                entry.outcome, entry.status, entry.error = failure.code, failure.wire.status, failure.message
                self._failed(entry, call)
            elif not stream.finished:
                entry.outcome, entry.status, entry.error = "cancelled", 499, "the caller went away"
            if stream.usage is not None:
                _record_usage(entry, stream.usage)
            entry.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self._log.record(entry)
            if self._metrics is not None:
                self._metrics.observe(entry, call, outcome, True)

        return close


Locate = Callable[[Call], "tuple[str, str] | None"]
"""The upstream server an MCP call goes to and the item's name there, or None when the hub does not know it."""

_MODEL_OPERATIONS = frozenset(
    {"llm.chat", "llm.messages", "llm.count_tokens", "llm.embed", "llm.models"}
)  # fmt: skip
"""Operations whose target is a model (the response operations' target is a response id)."""

_LOCATED_OPERATIONS = frozenset({"mcp.tool", "mcp.prompt", "mcp.resource", "mcp.complete", "mcp.subscribe"})
"""Operations that go to one upstream server."""


def _attribute_key(entry: LogEntry, key: VirtualKey) -> None:
    entry.key_id, entry.key_name, entry.team, entry.customer = key.id, key.name, key.team, key.customer


def _usage(entry: LogEntry, outcome: Outcome) -> None:
    entry.upstream_ms = outcome.upstream_ms
    if outcome.usage is not None:
        _record_usage(entry, outcome.usage)
    provider = outcome.headers.get("x-agenthub-provider")
    if provider:
        entry.deployment = f"{provider}/{outcome.headers.get('x-agenthub-model', '')}"


def _record_usage(entry: LogEntry, usage: Usage) -> None:
    """Tokens with their cache and reasoning parts, and the cost (None when the model has no price: unknown)."""
    entry.tokens = usage.tokens
    entry.cost_usd = usage.usd if usage.priced else None
    entry.cache_read_tokens = usage.cache_read_tokens
    entry.cache_write_5m_tokens = usage.cache_write_5m_tokens
    entry.cache_write_1h_tokens = usage.cache_write_1h_tokens
    entry.reasoning_tokens = usage.reasoning_tokens

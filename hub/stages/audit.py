"""audit: the outermost stage. Every call, denials and failures included, leaves one request-log row with the
key, operation, target, outcome and latency; recording is a list append, the write happens later in batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from hub.audit.requestlog import LogEntry, RequestLog
from hub.call import Call, Outcome
from hub.errors import HubError, Internal
from hub.executors.stream import ClosingStream
from hub.governance.keys import KeyRing
from hub.governance.usage import Usage
from hub.pipeline import Handler

logger = logging.getLogger(__name__)


class AuditStage:
    """Records one request-log row per call (at the end of a stream, for streamed outcomes)."""

    def __init__(self, log: RequestLog, keyring: Callable[[], KeyRing] | None = None) -> None:
        self._log = log
        self._keyring = keyring

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        started = time.perf_counter()
        entry = self._entry(call)
        deferred = False
        try:
            outcome = await call_next(call)
            if entry.key_id is None and outcome.principal is not None:
                entry.key_id, entry.key_name = outcome.principal.key.id, outcome.principal.key.name
            if outcome.tool_error:
                entry.outcome = "tool_error"
            _usage(entry, outcome)
            if isinstance(outcome.value, ClosingStream):
                deferred = True
                outcome.value.on_close(self._closer(entry, started))
            return outcome
        except HubError as exc:
            entry.outcome, entry.status, entry.error = exc.code, exc.wire.status, exc.message
            self._attribute(entry, call)
            raise
        except BaseException as exc:
            self._attribute(entry, call)
            if isinstance(exc, Exception):
                logger.exception("unexpected failure in %s %s", call.operation, call.target)
                denied = Internal("internal error")
                entry.outcome, entry.status, entry.error = denied.code, 500, type(exc).__name__
                raise denied from exc
            entry.outcome, entry.status, entry.error = "cancelled", 499, "the caller went away"
            raise
        finally:
            if not deferred:
                entry.latency_ms = round((time.perf_counter() - started) * 1000, 3)
                self._log.record(entry)

    def _attribute(self, entry: LogEntry, call: Call) -> None:
        """Who made a refused or failed call that came with only a credential (its key, if the key is one)."""
        if entry.key_id is None and call.credential and self._keyring is not None:
            key = self._keyring().verify(call.credential)
            if key is not None:
                entry.key_id, entry.key_name = key.id, key.name

    def _entry(self, call: Call) -> LogEntry:
        key = call.principal.key if call.principal else None
        return LogEntry(
            ts=datetime.now(UTC),
            call_id=call.call_id,
            parent_id=call.parent_id,
            key_id=key.id if key else None,
            key_name=key.name if key else None,
            door=call.door,
            operation=call.operation,
            target=call.target,
            outcome="ok",
            status=200,
            latency_ms=0.0,
            error=None,
        )

    def _closer(self, entry: LogEntry, started: float) -> Callable[[ClosingStream], Awaitable[None]]:
        """Record a stream's row when it ends: how it ended, its final usage and its whole duration."""

        async def close(stream: ClosingStream) -> None:
            if stream.failure is not None:
                failure = stream.failure
                entry.outcome, entry.status, entry.error = failure.code, failure.wire.status, failure.message
            elif not stream.finished:
                entry.outcome, entry.status, entry.error = "cancelled", 499, "the caller went away"
            if stream.usage is not None:
                _record_usage(entry, stream.usage)
            entry.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self._log.record(entry)

        return close


def _usage(entry: LogEntry, outcome: Outcome) -> None:
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

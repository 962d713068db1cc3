"""audit: the outermost stage. Every call, denials and failures included, leaves one request-log row with the
key, operation, target, outcome and latency; recording is a list append, the write happens later in batches."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from hub.call import Call, Outcome
from hub.errors import HubError, Internal
from hub.pipeline import Handler
from hub.requestlog import LogEntry, RequestLog

logger = logging.getLogger(__name__)


class AuditStage:
    def __init__(self, log: RequestLog) -> None:
        self._log = log

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        started = time.perf_counter()
        outcome_label = "ok"
        status = 200
        error: str | None = None
        try:
            outcome = await call_next(call)
            if outcome.tool_error:
                outcome_label = "tool_error"
            return outcome
        except HubError as exc:
            outcome_label, status, error = exc.code, exc.wire.status, exc.message
            raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                logger.exception("unexpected failure in %s %s", call.operation, call.target)
                denied = Internal("internal error")
                outcome_label, status, error = denied.code, 500, type(exc).__name__
                raise denied from exc
            outcome_label, status, error = "cancelled", 499, "the caller went away"
            raise
        finally:
            key = call.principal.key if call.principal else None
            self._log.record(
                LogEntry(
                    ts=datetime.now(UTC),
                    call_id=call.call_id,
                    parent_id=call.parent_id,
                    key_id=key.id if key else None,
                    key_name=key.name if key else None,
                    door=call.door,
                    operation=call.operation,
                    target=call.target,
                    outcome=outcome_label,
                    status=status,
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    error=error,
                )
            )

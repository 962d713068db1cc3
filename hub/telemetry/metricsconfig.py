"""Whether the hub keeps Prometheus metrics: the `[metrics]` section, and what the audit stage tells the metrics.

Kept apart from `hub.telemetry.metrics` so that the settings and the pipeline need no import of
`prometheus_client`: a hub with metrics off never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from hub.audit.requestlog import LogEntry
    from hub.call import Call, Outcome

__all__ = ["CallObserver", "MetricsSection"]


class MetricsSection(BaseModel):
    """`[metrics]`: the Prometheus endpoint, `GET /metrics`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Serve `GET /metrics` and count every call (a handful of in-memory increments per call)."""
    token: str | None = Field(default=None, min_length=1)
    """When set (`env:NAME` or `file:PATH`, like every secret), a scrape must send `Authorization: Bearer <token>`;
    without it `/metrics` answers anyone who reaches the hub."""


class CallObserver(Protocol):
    """Told of every governed call once it is over (a stream: once it ended), by the audit stage."""

    def observe(self, entry: LogEntry, call: Call, outcome: Outcome | None, streamed: bool) -> None:
        """`entry` is the call's finished request-log row; `outcome` is None for a call that was refused or
        failed; `streamed` says that the outcome's value was a stream (its usage is the stream's)."""
        ...

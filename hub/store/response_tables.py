"""The table of stored Responses API responses the hub served (`hub.store.responses`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class ResponseRow(SQLModel, table=True):
    """One stored response: who owns it, the deployment and provider key that hold it upstream, the response it
    continued, and the hub's own copy of the turn (its input items and the response with its output), which is
    empty when the turn was larger than the configured cap."""

    __tablename__ = "responses"  # pyright: ignore[reportAssignmentType]

    id: str = Field(primary_key=True)
    key_id: str = Field(index=True)
    """The virtual key that created it: only that key may read, continue, cancel or delete it."""
    provider: str
    model: str
    provider_key: str
    """The name of the provider key it was created with (the upstream keeps state per key or project)."""
    previous_id: str | None = None
    created_at: datetime = Field(index=True)
    input: str | None = None
    """The request's input items, as JSON (None: not kept, over the cap)."""
    response: str | None = None
    """The response object, output items included, as JSON (None: not kept, over the cap)."""

"""`[console]`: the admin console at `/ui` (on by default; it is as guarded as the admin API it calls)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSection(BaseModel):
    """`[console]`: whether `/ui` is served, and how long an unused sign-in lasts."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Serve the console at `/ui`; when false every `/ui` path answers 404."""
    idle_timeout_minutes: float = Field(default=30, gt=0, le=24 * 60)
    """A session unused for this long is signed out (the next page asks to sign in again)."""

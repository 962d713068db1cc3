"""Database tables (SQLModel). Every change to them comes with a migration step in `sql.py`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel


class DuplicateName(ValueError):
    """An entity with that name exists already."""


def insert_new(s: Session, row: SQLModel, what: str) -> None:
    """Insert a new named row now (flushed); the database's unique constraint is the final word when two writers
    create the same name at once (the loser's pre-check saw nothing). Commit with `commit_new`.

    Raises:
        DuplicateName: the name was taken (`what` names it, e.g. "a team named 'x'").
    """
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        s.rollback()
        raise DuplicateName(f"{what} exists already") from None


def commit_new(s: Session, what: str) -> None:
    """Commit a session that inserted a new named row (see `insert_new`).

    Raises:
        DuplicateName: the name was taken meanwhile.
    """
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        raise DuplicateName(f"{what} exists already") from None


class MetaRow(SQLModel, table=True):
    """Small named values: `schema_version`, `keys_version` (moves on every key change)."""

    __tablename__ = "meta"  # pyright: ignore[reportAssignmentType]

    key: str = Field(primary_key=True)
    value: str


class KeyRow(SQLModel, table=True):
    """A virtual key. Only the SHA-256 of its secret is stored."""

    __tablename__ = "virtual_keys"  # pyright: ignore[reportAssignmentType]

    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    secret_hash: str = Field(index=True, unique=True)
    prefix: str
    policy: str = "{}"
    """JSON document: tool/model/provider filters, team, customer, budget, rate limit, agent settings."""
    source: str = "cli"
    """Where the key was declared: `config`, `cli` or `api`."""
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class RequestLogRow(SQLModel, table=True):
    """One governed call: who, what, outcome, how long."""

    __tablename__ = "request_log"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(index=True)
    call_id: str = Field(index=True)
    parent_id: str | None = None
    key_id: str | None = Field(default=None, index=True)
    key_name: str | None = None
    door: str
    operation: str
    target: str
    outcome: str
    """`ok`, `tool_error` or an error code such as `not_found_error`."""
    status: int
    latency_ms: float
    error: str | None = None
    deployment: str | None = None
    """`provider/model` that served an LLM call (schema version 2)."""
    tokens: int | None = None
    cost_usd: float | None = None
    """None when the call's model has no price (the cost is unknown, not zero)."""
    cache_read_tokens: int | None = None
    """The parts of `tokens` read from and written to a cache, and spent reasoning (schema version 3)."""
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None


class GuardrailRuleRow(SQLModel, table=True):
    """A guardrail added through the admin API."""

    __tablename__ = "guardrail_rules"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    config: str
    """The `GuardrailConfig` fields that were set, as JSON (credentials only as references)."""
    created_at: datetime
    updated_at: datetime


class ToolPinRow(SQLModel, table=True):
    """The approved tool definitions of one server."""

    __tablename__ = "tool_pins"  # pyright: ignore[reportAssignmentType]

    server: str = Field(primary_key=True)
    hashes: str
    """`{tool name: sha256}` as JSON."""
    definitions: str
    """`{tool name: definition}` as JSON: what was approved, for review."""
    approved_by: str
    approved_at: datetime

"""Database tables (SQLModel). Every change to them comes with a migration step in `sql.py`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, text
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


FILTERED_COLUMNS = ("key_id", "team", "customer", "door", "operation", "model", "server", "tool")
"""The request-log columns the log API filters on with equality through an index `(column, ts)`: a filter with a
time range is one index range walked newest first (`ORDER BY ts DESC, id DESC LIMIT n` stops after n rows)."""

FAILED = "status <> 200 OR outcome <> 'ok'"
"""The rows of calls that did not end well: the predicate of the partial index that `status` and `outcome` filters
walk (schema version 5). A status other than 200 or an outcome other than `ok` implies it, and the log API adds
it, word for word, to such a filter, so SQLite and PostgreSQL both see that the index holds every row asked for;
the few rows it holds cost the flush little, where full `(status, ts)` and `(outcome, ts)` indexes took an entry
for every row and, for the common values (200, `ok`), helped no query that walking `ts` does not serve as well."""

REQUEST_LOG_INDEXES: dict[str, tuple[str, ...]] = {
    **{f"ix_request_log_{name}_ts": (name, "ts") for name in FILTERED_COLUMNS},
    "ix_request_log_failed_ts": ("ts",),
    "ix_request_log_loop_id": ("loop_id",),
    "ix_request_log_parent_id": ("parent_id",),
}
"""Secondary indexes of `request_log` beyond `ts` and `call_id`: one per equality filter, one for failed calls, and
the two that find a call's tree (its children, and every call of a loop)."""

RETIRED_INDEXES = ("ix_request_log_status_ts", "ix_request_log_outcome_ts")
"""Indexes of schema version 4 that version 5 drops (`ix_request_log_failed_ts` serves their filters)."""

SPARSE_COLUMNS = frozenset({"key_id", "team", "customer", "model", "server", "tool", "loop_id", "parent_id"})
"""Columns that are NULL on many rows (an MCP call has no model, an LLM call no server or tool, most calls no team,
loop or parent): their indexes are partial (`WHERE column IS NOT NULL`), so such a row costs the flush no entry in
them, and an equality filter, which implies the column is not NULL, still uses them."""


def index_where(name: str, columns: tuple[str, ...]) -> str | None:
    """The predicate of the partial index `name` over `columns`, or None for a full index."""
    if name == "ix_request_log_failed_ts":
        return FAILED
    return f"{columns[0]} IS NOT NULL" if columns[0] in SPARSE_COLUMNS else None


def _index(name: str, columns: tuple[str, ...]) -> Index:
    where = index_where(name, columns)
    if where is None:
        return Index(name, *columns)
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


class RequestLogRow(SQLModel, table=True):
    """One governed call: who, what, outcome, how long."""

    __tablename__ = "request_log"  # pyright: ignore[reportAssignmentType]
    __table_args__ = tuple(_index(name, columns) for name, columns in REQUEST_LOG_INDEXES.items())

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(index=True)
    call_id: str = Field(index=True)
    parent_id: str | None = None
    key_id: str | None = None
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
    team: str | None = None
    """The key's team and customer when the call was made (schema version 4, like every column below)."""
    customer: str | None = None
    model: str | None = None
    """The model an LLM call asked for (an alias or `provider/model`); `deployment` is the one that served it."""
    server: str | None = None
    """The upstream server of an MCP call, and the tool, prompt or resource as that server names it."""
    tool: str | None = None
    upstream_ms: float | None = None
    """Of `latency_ms`: the time spent waiting on the upstream server or provider."""
    loop_id: str | None = None
    """The outermost call of a nested call (an Agent Mode loop, a Code Mode run); None for a call made by a client."""


class RequestLogBodyRow(SQLModel, table=True):
    """The request and response bodies of one call (`[hub] log_bodies`), redacted and capped; apart from
    `request_log` so that its rows stay narrow and its scans short."""

    __tablename__ = "request_log_bodies"  # pyright: ignore[reportAssignmentType]

    call_id: str = Field(primary_key=True)
    ts: datetime = Field(index=True)
    request: str | None = None
    response: str | None = None
    truncated: bool = False
    """A body was cut to `[hub] log_body_max_bytes`."""


class RequestLogDailyRow(SQLModel, table=True):
    """Calls, errors, tokens and cost per UTC day and per entity (`dim` is `day`, `key`, `team`, `customer`,
    `model` or `server`; `value` the entity, empty for `day`), added to by each request-log flush: summaries read
    these few rows, never the raw log."""

    __tablename__ = "request_log_daily"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (Index("ix_request_log_daily_dim_day", "dim", "day"),)

    day: str = Field(primary_key=True)
    """`YYYY-MM-DD` (UTC)."""
    dim: str = Field(primary_key=True)
    value: str = Field(primary_key=True)
    calls: int = 0
    errors: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


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

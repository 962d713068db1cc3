"""The SQL store: keys, meta values and the request log, over SQLAlchemy (SQLite by default, PostgreSQL too).

Every method is synchronous and meant to run off the event loop (`anyio.to_thread.run_sync`) or in the CLI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, create_engine, select

from hub.governance.keys import POLICY_FIELDS, VirtualKey, hash_secret
from hub.store.admin_tables import writing
from hub.store.changes import create_change_table
from hub.store.tables import (
    REQUEST_LOG_INDEXES,
    RETIRED_INDEXES,
    DuplicateName,
    KeyRow,
    MetaRow,
    RequestLogRow,
    commit_new,
    index_where,
    insert_new,
)

SCHEMA_VERSION = 6


class SqlStore:
    """Keys, meta values and the request log in one database."""

    def __init__(self, url: str) -> None:
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            connect_args["check_same_thread"] = False
        self.url = url
        # A pre-ping finds connections a database server dropped; an embedded SQLite file has none to drop.
        ping = not url.startswith("sqlite")
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=ping)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to `SCHEMA_VERSION`: create missing tables, then run each step past the stored version.

        Steps only add (columns, indexes) and are idempotent, so a replica that races another through the same
        step does no harm.
        """
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as s:
            row = s.get(MetaRow, "schema_version")
            current = int(row.value) if row else 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"database schema {current} is newer than this AgentHub ({SCHEMA_VERSION})")
        for version in range(max(current, 1) + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](self.engine)
        with Session(self.engine) as s:
            s.merge(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
            s.commit()

    # -- keys ----------------------------------------------------------------------------------------------------

    def keys_version(self) -> str:
        return read_meta(self.engine, "keys_version")

    def _bump_keys_version(self, s: Session) -> None:
        s.merge(MetaRow(key="keys_version", value=uuid.uuid4().hex))

    def create_key(
        self,
        name: str,
        secret: str,
        policy: Mapping[str, Any],
        *,
        source: str = "cli",
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> KeyRow:
        """Store a new key (by hash); in `session` when given (its owner commits), else in a transaction of its own.

        Raises:
            DuplicateName: an active key already has this name (also when another writer stored it first).
        """
        with writing(self.engine, session) as s:
            existing = s.exec(select(KeyRow).where(KeyRow.name == name)).first()
            if existing is not None:
                if existing.revoked_at is None:
                    raise DuplicateName(f"a key named '{name}' exists already")
                s.delete(existing)
                s.flush()
            row = KeyRow(
                id="key_" + uuid.uuid4().hex[:16],
                name=name,
                secret_hash=hash_secret(secret),
                prefix=secret[:8],
                policy=policy_json(policy),
                source=source,
                created_at=datetime.now(UTC),
                expires_at=expires_at,
            )
            insert_new(s, row, f"a key named '{name}'")
            self._bump_keys_version(s)
            if session is None:
                commit_new(s, f"a key named '{name}'")
                s.refresh(row)
            return row

    def upsert_config_key(
        self, name: str, secret: str | None, policy: Mapping[str, Any], expires_at: datetime | None = None
    ) -> tuple[KeyRow, bool]:
        """Make a config-declared key match the file; returns (row, created). A given secret replaces the stored
        hash; without one an existing key keeps its secret."""
        with Session(self.engine) as s:
            row = s.exec(select(KeyRow).where(KeyRow.name == name)).first()
            if row is None or row.revoked_at is not None:
                if row is not None:
                    s.delete(row)
                    s.flush()
                if secret is None:
                    return KeyRow(id="", name=name, secret_hash="", prefix="", created_at=datetime.now(UTC)), True
                s.commit()
                return self.create_key(name, secret, policy, source="config", expires_at=expires_at), True
            changed = False
            new_policy = policy_json(policy)
            if row.policy != new_policy or row.expires_at != expires_at:
                row.policy, row.expires_at, changed = new_policy, expires_at, True
            if secret is not None and row.secret_hash != hash_secret(secret):
                row.secret_hash, row.prefix, changed = hash_secret(secret), secret[:8], True
            if changed:
                s.add(row)
                self._bump_keys_version(s)
                s.commit()
                s.refresh(row)
            return row, False

    def list_keys(self, *, include_revoked: bool = False) -> list[KeyRow]:
        with Session(self.engine) as s:
            query = select(KeyRow).order_by(col(KeyRow.name))
            rows = list(s.exec(query))
        return [r for r in rows if include_revoked or r.revoked_at is None]

    def revoke_key(self, name_or_id: str, session: Session | None = None) -> bool:
        """Revoke by name or id; False when no active key matches. In `session` when given (its owner commits)."""
        with writing(self.engine, session) as s:
            row = s.exec(select(KeyRow).where((KeyRow.name == name_or_id) | (KeyRow.id == name_or_id))).first()
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
            s.add(row)
            self._bump_keys_version(s)
            return True

    def get_key(self, name_or_id: str) -> KeyRow | None:
        """The key with this id or name (revoked ones too), or None."""
        with Session(self.engine) as s:
            return s.exec(select(KeyRow).where((KeyRow.name == name_or_id) | (KeyRow.id == name_or_id))).first()

    def update_key(
        self, key_id: str, policy: Mapping[str, Any], expires_at: datetime | None, session: Session | None = None
    ) -> KeyRow | None:
        """Replace an active key's policy and expiry (the secret stays); None when no active key has this id. In
        `session` when given (its owner commits)."""
        with writing(self.engine, session) as s:
            row = s.get(KeyRow, key_id)
            if row is None or row.revoked_at is not None:
                return None
            row.policy, row.expires_at = policy_json(policy), expires_at
            s.add(row)
            self._bump_keys_version(s)
            s.flush()
            return row

    def active_keys(self) -> list[tuple[str, VirtualKey]]:
        """(hash, compiled key) for every active key."""
        return [(row.secret_hash, to_virtual_key(row)) for row in self.list_keys()]

    # -- request log -------------------------------------------------------------------------------------------

    def write_log(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append request-log rows (dicts of `RequestLogRow` columns) in one statement."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(RequestLogRow), list(rows))

    def recent_log(self, limit: int = 100) -> list[RequestLogRow]:
        with Session(self.engine) as s:
            query = select(RequestLogRow).order_by(col(RequestLogRow.id).desc()).limit(limit)
            return list(s.exec(query))


def read_all_meta(engine: Engine) -> dict[str, str]:
    """Every value of the `meta` table in one query (the versions the running hub follows, read together)."""
    with engine.connect() as conn:
        return dict(conn.execute(_META_ROWS).tuples().all())


_META_ROWS = select(col(MetaRow.key), col(MetaRow.value))


def read_meta(engine: Engine, key: str, default: str = "0") -> str:
    """One value of the `meta` table (versions that other processes move when they change something)."""
    with Session(engine) as s:
        row = s.get(MetaRow, key)
        return row.value if row else default


def _add_columns(engine: Engine, table: str, columns: Mapping[str, str]) -> None:
    present = {c["name"] for c in inspect(engine).get_columns(table)}
    with engine.begin() as conn:
        for name, ddl in columns.items():
            if name not in present:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))


def _v2_request_log_usage(engine: Engine) -> None:
    """Version 2: the request log records the deployment, tokens and cost of LLM calls."""
    _add_columns(engine, "request_log", {"deployment": "VARCHAR", "tokens": "INTEGER", "cost_usd": "FLOAT"})


def _v3_request_log_cache(engine: Engine) -> None:
    """Version 3: the request log records an LLM call's cache reads and writes (5 minutes, 1 hour) and reasoning
    tokens. Rows written before stay NULL there (unknown), never 0."""
    columns = ("cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")
    _add_columns(engine, "request_log", dict.fromkeys(columns, "INTEGER"))


def _v4_request_log_filters(engine: Engine) -> None:
    """Version 4: the request log records the key's team and customer, the model, server and tool, the upstream's
    share of the latency and the loop a nested call belongs to, with an index per filter of the log API (`ts`
    second, so a filter with a time range reads one range newest first); the single-column `key_id` index gives
    way to `(key_id, ts)`. The bodies and daily rollup tables are new, so `create_all` made them. Rows written
    before stay NULL in the new columns, and the rollup starts with the rows written after the upgrade."""
    columns = {"team": "VARCHAR", "customer": "VARCHAR", "model": "VARCHAR", "server": "VARCHAR", "tool": "VARCHAR",
               "upstream_ms": "FLOAT", "loop_id": "VARCHAR"}  # fmt: skip
    _add_columns(engine, "request_log", columns)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS ix_request_log_key_id"))
    _create_log_indexes(engine)


def _v5_request_log_failed(engine: Engine) -> None:
    """Version 5: the full `(status, ts)` and `(outcome, ts)` indexes give way to one partial index of the failed
    calls (`hub.store.tables.FAILED`), so a successful call, nearly every call, costs the flush two index entries
    fewer. A version 3 database has the new index already (version 4 creates the current set)."""
    with engine.begin() as conn:
        for name in RETIRED_INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    _create_log_indexes(engine)


def _create_log_indexes(engine: Engine) -> None:
    """Create the request log's secondary indexes that are missing (`REQUEST_LOG_INDEXES`, partial where
    `index_where` says)."""
    with engine.begin() as conn:
        for name, indexed in REQUEST_LOG_INDEXES.items():
            where = index_where(name, indexed)
            partial = f" WHERE {where}" if where is not None else ""
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON request_log ({', '.join(indexed)}){partial}"))


def _v6_changes(engine: Engine) -> None:
    """Version 6: the change log (`hub.store.changes`), which every hub process polls to follow admin changes made
    by the others."""
    create_change_table(engine)


MIGRATIONS: dict[int, Callable[[Engine], None]] = {
    2: _v2_request_log_usage,
    3: _v3_request_log_cache,
    4: _v4_request_log_filters,
    5: _v5_request_log_failed,
    6: _v6_changes,
}
"""Schema step per version: `MIGRATIONS[n]` upgrades a version n-1 database to version n."""


def to_virtual_key(row: KeyRow) -> VirtualKey:
    expires = row.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return VirtualKey.from_policy(row.id, row.name, json.loads(row.policy), expires)


def policy_json(policy: Mapping[str, Any]) -> str:
    """The stored form of a key's policy: only known fields, stable order, JSON-safe values."""
    clean = {k: policy[k] for k in POLICY_FIELDS if k in policy and policy[k] is not None}
    return json.dumps(clean, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__} in a key policy")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()

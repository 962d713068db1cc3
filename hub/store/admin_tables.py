"""Tables of the admin side: customers, teams, run-time servers, admin tokens, roles and the audit log.

`AdminStore` reads and writes them over the `SqlStore`'s engine. Every method is synchronous and meant to run
off the event loop. Changes that running hubs must follow move a version value in the `meta` table
(`governance_version`, `servers_version`), which every replica polls. Each write takes an optional `session`:
given one, it writes there and leaves the commit to the caller (the admin API commits a change together with its
audit entry); without, it commits its own transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from hub.store.tables import MetaRow, insert_new


class CustomerRow(SQLModel, table=True):
    """A customer (top of the budget hierarchy)."""

    __tablename__ = "customers"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    budget: str | None = None
    """`BudgetConfig` as JSON, or null."""
    rate_limit: str | None = None
    """`RateLimitConfig` as JSON, or null."""
    source: str = "api"
    created_at: datetime
    updated_at: datetime


class TeamRow(SQLModel, table=True):
    """A team, optionally under a customer."""

    __tablename__ = "teams"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    customer: str | None = Field(default=None, index=True)
    budget: str | None = None
    rate_limit: str | None = None
    source: str = "api"
    created_at: datetime
    updated_at: datetime


class ServerRow(SQLModel, table=True):
    """An upstream MCP server added at run time (config-file servers are not stored)."""

    __tablename__ = "runtime_servers"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    config: str
    """The upstream's configuration as JSON (`connectors.config.UpstreamConfig`)."""
    created_at: datetime
    updated_at: datetime


class AdminTokenRow(SQLModel, table=True):
    """An admin API token or an OIDC login session; only the SHA-256 of the secret is stored."""

    __tablename__ = "admin_tokens"  # pyright: ignore[reportAssignmentType]

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    token_hash: str = Field(index=True, unique=True)
    prefix: str
    kind: str = "token"
    """`token` (created through the API) or `session` (an OIDC login)."""
    roles: str = "[]"
    teams: str = "[]"
    subject: str
    """Who the token acts as (the token's name, or the OIDC `sub`/email)."""
    created_by: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class RoleRow(SQLModel, table=True):
    """A custom role: a named set of permissions (`resource:action`)."""

    __tablename__ = "admin_roles"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    permissions: str = "[]"
    description: str = ""
    created_at: datetime
    updated_at: datetime


class AuditEntryRow(SQLModel, table=True):
    """One sealed audit entry (see `hub.audit.chain.AuditEntry`)."""

    __tablename__ = "audit_log"  # pyright: ignore[reportAssignmentType]

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    time: str = Field(index=True)
    actor: str
    action: str
    resource_type: str
    resource_id: str | None = None
    before: str = "null"
    after: str = "null"
    source_ip: str | None = None
    user_agent: str | None = None
    outcome: str
    key_id: str
    prev_mac: str
    mac: str


class AuditHeadRow(SQLModel, table=True):
    """The last seq and mac of the chain, in its own row: appends lock it, `verify` uses it to catch a cut tail."""

    __tablename__ = "audit_head"  # pyright: ignore[reportAssignmentType]

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    mac: str = "0" * 64


class AuditCheckpointRow(SQLModel, table=True):
    """A signed retention checkpoint; the newest one is where verification starts."""

    __tablename__ = "audit_checkpoints"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    seq: int
    mac: str
    time: str
    key_id: str
    signature: str


class CursorRow(SQLModel, table=True):
    """A persisted position, e.g. the last audit seq forwarded to syslog, and who holds the forwarding lease."""

    __tablename__ = "cursors"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    seq: int = 0
    owner: str | None = None
    lease_until: float = 0.0


def now_utc() -> datetime:
    return datetime.now(UTC)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def loads_opt(value: str | None) -> Any:
    return None if value is None else json.loads(value)


@contextmanager
def writing(engine: Engine, session: Session | None) -> Generator[Session]:
    """The caller's `session` (it commits), or a new one committed when the block ends without an error."""
    if session is not None:
        yield session
        return
    with Session(engine, expire_on_commit=False) as own:
        yield own
        own.commit()


class AdminStore:
    """CRUD for the admin tables over one engine (shared with `SqlStore`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine)
        # Rows that concurrent writers update must exist first: two first-time inserts would collide.
        self._insert_once(AuditHeadRow())
        for name in ("governance_version", "servers_version", "keys_version"):
            self._insert_once(MetaRow(key=name, value="0"))

    def _insert_once(self, row: SQLModel) -> None:
        """Insert a singleton row unless it exists (another process may insert it at the same moment)."""
        with Session(self.engine) as s:
            key = row.model_dump()["id" if isinstance(row, AuditHeadRow) else "key"]
            if s.get(type(row), key) is not None:
                return
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()

    # -- versions --------------------------------------------------------------------------------------------

    def version(self, name: str) -> str:
        """A meta value that moves on every change of one kind (`governance_version`, `servers_version`)."""
        with Session(self.engine) as s:
            row = s.get(MetaRow, name)
            return row.value if row else "0"

    @staticmethod
    def bump(s: Session, name: str) -> None:
        s.merge(MetaRow(key=name, value=uuid.uuid4().hex))

    # -- customers and teams ---------------------------------------------------------------------------------

    def customers(self) -> list[CustomerRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(CustomerRow).order_by(col(CustomerRow.name))))

    def teams(self) -> list[TeamRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(TeamRow).order_by(col(TeamRow.name))))

    def get_customer(self, name: str) -> CustomerRow | None:
        with Session(self.engine) as s:
            return s.get(CustomerRow, name)

    def get_team(self, name: str) -> TeamRow | None:
        with Session(self.engine) as s:
            return s.get(TeamRow, name)

    def save(self, row: CustomerRow | TeamRow, session: Session | None = None) -> None:
        """Insert or replace a customer or team and move `governance_version`."""
        with writing(self.engine, session) as s:
            s.merge(row)
            self.bump(s, "governance_version")

    def create(self, row: CustomerRow | TeamRow, session: Session | None = None) -> None:
        """Insert a new customer or team and move `governance_version`.

        Raises:
            DuplicateName: one with that name exists (also when another writer stored it first).
        """
        what = f"a {'customer' if isinstance(row, CustomerRow) else 'team'} named '{row.name}'"
        with writing(self.engine, session) as s:
            insert_new(s, row, what)
            self.bump(s, "governance_version")

    def delete_entity(self, kind: type[CustomerRow] | type[TeamRow], name: str, session: Session | None = None) -> bool:
        with writing(self.engine, session) as s:
            row = s.get(kind, name)
            if row is None:
                return False
            s.delete(row)
            self.bump(s, "governance_version")
            return True

    # -- servers ---------------------------------------------------------------------------------------------

    def servers(self) -> list[ServerRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(ServerRow).order_by(col(ServerRow.name))))

    def get_server(self, name: str) -> ServerRow | None:
        with Session(self.engine) as s:
            return s.get(ServerRow, name)

    def save_server(self, name: str, config: dict[str, Any], session: Session | None = None) -> None:
        with writing(self.engine, session) as s:
            existing = s.get(ServerRow, name)
            now = now_utc()
            created = existing.created_at if existing else now
            s.merge(ServerRow(name=name, config=dumps(config), created_at=created, updated_at=now))
            self.bump(s, "servers_version")

    def create_server(self, name: str, config: dict[str, Any], session: Session | None = None) -> None:
        """Insert a new runtime server and move `servers_version`.

        Raises:
            DuplicateName: one with that name exists (also when another writer stored it first).
        """
        now = now_utc()
        what = f"a server named '{name}'"
        with writing(self.engine, session) as s:
            insert_new(s, ServerRow(name=name, config=dumps(config), created_at=now, updated_at=now), what)
            self.bump(s, "servers_version")

    def delete_server(self, name: str, session: Session | None = None) -> bool:
        with writing(self.engine, session) as s:
            row = s.get(ServerRow, name)
            if row is None:
                return False
            s.delete(row)
            self.bump(s, "servers_version")
            return True

    # -- admin tokens and sessions ---------------------------------------------------------------------------

    def add_token(self, row: AdminTokenRow, session: Session | None = None) -> None:
        with writing(self.engine, session) as s:
            s.add(row)
            s.flush()

    def token_by_hash(self, token_hash: str) -> AdminTokenRow | None:
        with Session(self.engine) as s:
            return s.exec(select(AdminTokenRow).where(AdminTokenRow.token_hash == token_hash)).first()

    def tokens(self, *, kind: str | None = None) -> list[AdminTokenRow]:
        with Session(self.engine) as s:
            query = select(AdminTokenRow).order_by(col(AdminTokenRow.created_at))
            if kind is not None:
                query = query.where(AdminTokenRow.kind == kind)
            return list(s.exec(query))

    def revoke_token(self, token_id: str, session: Session | None = None) -> AdminTokenRow | None:
        with writing(self.engine, session) as s:
            row = s.get(AdminTokenRow, token_id)
            if row is None or row.revoked_at is not None:
                return None
            row.revoked_at = now_utc()
            s.add(row)
            s.flush()
            return row

    # -- roles -----------------------------------------------------------------------------------------------

    def roles(self) -> list[RoleRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(RoleRow).order_by(col(RoleRow.name))))

    def get_role(self, name: str) -> RoleRow | None:
        with Session(self.engine) as s:
            return s.get(RoleRow, name)

    def save_role(self, row: RoleRow, session: Session | None = None) -> None:
        with writing(self.engine, session) as s:
            s.merge(row)

    def create_role(self, row: RoleRow, session: Session | None = None) -> None:
        """Insert a new custom role.

        Raises:
            DuplicateName: one with that name exists (also when another writer stored it first).
        """
        what = f"a role named '{row.name}'"
        with writing(self.engine, session) as s:
            insert_new(s, row, what)

    def delete_role(self, name: str, session: Session | None = None) -> bool:
        with writing(self.engine, session) as s:
            row = s.get(RoleRow, name)
            if row is None:
                return False
            s.delete(row)
            return True

    # -- audit -----------------------------------------------------------------------------------------------

    def audit_rows(self, *, after: int = 0, limit: int | None = None) -> list[AuditEntryRow]:
        with Session(self.engine) as s:
            query = select(AuditEntryRow).where(AuditEntryRow.seq > after).order_by(col(AuditEntryRow.seq))
            if limit is not None:
                query = query.limit(limit)
            return list(s.exec(query))

    def audit_head(self) -> AuditHeadRow:
        with Session(self.engine) as s:
            return s.get(AuditHeadRow, 1) or AuditHeadRow()

    def latest_checkpoint(self) -> AuditCheckpointRow | None:
        with Session(self.engine) as s:
            query = select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.seq).desc()).limit(1)
            return s.exec(query).first()

    def delete_audit_through(self, s: Session, seq: int) -> None:
        s.exec(delete(AuditEntryRow).where(col(AuditEntryRow.seq) <= seq))

    def lock_head(self, s: Session) -> AuditHeadRow:
        """The head row inside `s`, locked for the rest of the transaction (appends are serialised by it)."""
        if self.engine.dialect.name == "sqlite":
            s.exec(text("BEGIN IMMEDIATE"))  # pyright: ignore[reportCallIssue,reportArgumentType]
            head = s.get(AuditHeadRow, 1)
        else:
            head = s.exec(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).first()
        if head is None:
            head = AuditHeadRow()
            s.add(head)
            s.flush()
        return head

    # -- cursors ---------------------------------------------------------------------------------------------

    def cursor(self, name: str) -> CursorRow:
        with Session(self.engine) as s:
            return s.get(CursorRow, name) or CursorRow(name=name)

    def save_cursor(self, name: str, seq: int) -> None:
        with Session(self.engine) as s:
            row = s.get(CursorRow, name) or CursorRow(name=name)
            row.seq = seq
            s.add(row)
            s.commit()

    def take_lease(self, name: str, owner: str, now: float, duration: float) -> bool:
        """Hold (or renew) the lease on cursor `name` unless another owner holds an unexpired one."""
        with Session(self.engine) as s:
            query = select(CursorRow).where(CursorRow.name == name)
            if self.engine.dialect.name != "sqlite":
                query = query.with_for_update()
            else:
                s.exec(text("BEGIN IMMEDIATE"))  # pyright: ignore[reportCallIssue,reportArgumentType]
            row = s.exec(query).first() or CursorRow(name=name)
            if row.owner not in (None, owner) and row.lease_until > now:
                s.rollback()
                return False
            row.owner, row.lease_until = owner, now + duration
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # another process created the cursor row first: it holds the lease
                s.rollback()
                return False
            return True


def rows_to_dicts(rows: Sequence[SQLModel]) -> list[dict[str, Any]]:
    return [row.model_dump(mode="json") for row in rows]

"""The change log: one row per committed admin change, so every hub process can follow the others.

A hub process keeps keys, customers and teams, servers, guardrail rules, pins and signed-in people in memory. A
change made elsewhere (another replica, another worker of this machine, the CLI) must reach it: each change
appends a `changes` row, with a monotonically increasing id and the kind of entity it changed, in the transaction
of the change itself, and every process polls for ids it has not seen (`hub.runtime.changes`).

Two ways in, so that no write path can forget:
- a write that moves one of the followed meta versions (`VERSION_KINDS`) records its kind on flush, whatever code
  made it (admin API, CLI, config sync at start, sign-in);
- an admin write that moves no version (roles, admin tokens, usage resets, audit purges, upstream logouts)
  records its kind explicitly (`record_change`), in the transaction of its audit entry.

Each row also names the hub that made it (`origin`: its engine in its process): that hub applied the change
already, and skips it.
After a commit that recorded changes, the `announcers` (the Redis notification, when configured) are told.
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel, col

from hub.store.tables import MetaRow

logger = logging.getLogger(__name__)

VERSION_KINDS: dict[str, str] = {
    "keys_version": "keys",
    "governance_version": "governance",
    "servers_version": "servers",
    "guardrails_version": "guardrails",
    "pins_version": "pins",
    "signin_version": "signin",
}
"""The meta versions running processes follow, and the kind of change each one stands for."""

RETENTION = timedelta(days=1)
"""How long change rows are kept: far longer than any process takes between two polls."""

_INFO = "agenthub.changes"
"""Where a session keeps the kinds it recorded (in `Session.info`), until it commits or rolls back."""


class ChangeRow(SQLModel, table=True):
    """One committed change: its id orders the changes, `kind` says what to reload, `origin` who made it."""

    __tablename__ = "changes"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    origin: str
    at: datetime


_origins: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def origin(engine: Engine) -> str:
    """Who writes through `engine` in the change log: one hub (a hub has one engine), in this process (a forked
    worker that inherited the engine is another origin)."""
    token = _origins.get(engine)
    if token is None:
        token = _origins[engine] = uuid.uuid4().hex[:12]
    return f"{os.getpid()}-{token}"


def record_change(s: Session | OrmSession, kind: str) -> None:
    """Append a change of `kind` to the session's transaction (once per kind and transaction)."""
    kinds: set[str] = s.info.setdefault(_INFO, set())
    if kind in kinds:
        return
    kinds.add(kind)
    s.add(ChangeRow(kind=kind, origin=_origin_of(s), at=datetime.now(UTC)))


def _origin_of(s: Session | OrmSession) -> str:
    bind: Any = s.get_bind()
    return origin(getattr(bind, "engine", bind))


def recorded(s: Session | OrmSession) -> frozenset[str]:
    """The kinds this session's open transaction recorded so far."""
    return frozenset(s.info.get(_INFO, ()))


Announcer = Callable[[str, frozenset[str]], None]
"""Told, in the committing thread, the origin and the kinds of a transaction this process just committed."""

announcers: list[Announcer] = []


@event.listens_for(OrmSession, "before_flush")
def _versions_moved(session: OrmSession, _context: Any, _instances: Any) -> None:
    """A followed meta version that moves records its kind (the `"0"` a table starts with is no change)."""
    for row in (*session.new, *session.dirty):
        if isinstance(row, MetaRow) and row.value != "0" and (kind := VERSION_KINDS.get(row.key)) is not None:
            record_change(session, kind)


@event.listens_for(OrmSession, "after_commit")
def _committed(session: OrmSession) -> None:
    kinds: set[str] | None = session.info.pop(_INFO, None)
    if kinds:
        announce(_origin_of(session), frozenset(kinds))


def announce(made_by: str, kinds: frozenset[str]) -> None:
    """Tell the announcers about changes `made_by` just committed (a write through SQLAlchemy Core calls this
    itself after its commit; ORM sessions do so on their own)."""
    for announcer in tuple(announcers):  # a copy: the event loop may change the list meanwhile
        try:
            announcer(made_by, kinds)
        except Exception:  # a notification is a shortcut; the poll still finds the change
            logger.exception("announcing a change failed")


@event.listens_for(OrmSession, "after_rollback")
def _rolled_back(session: OrmSession) -> None:
    session.info.pop(_INFO, None)


# -- reading ---------------------------------------------------------------------------------------------------


def newest_change(engine: Engine) -> int:
    """The id of the newest change (0 with none)."""
    with engine.connect() as conn:
        newest: Any = conn.execute(select(func.coalesce(func.max(col(ChangeRow.id)), 0))).scalar_one()
        return int(newest)


_AFTER = (
    select(col(ChangeRow.id), col(ChangeRow.kind), col(ChangeRow.origin))
    .where(col(ChangeRow.id) > bindparam("after"))
    .order_by(col(ChangeRow.id))
)
"""Built once: the poll runs it with a new bound value only (no statement to build or look up)."""


def changes_after(engine: Engine, after: int) -> Sequence[tuple[int, str, str]]:
    """`(id, kind, origin)` of every change with an id above `after`, oldest first (one indexed range read; empty
    when nothing changed, which is nearly always)."""
    with engine.connect() as conn:
        rows: Any = conn.execute(_AFTER, {"after": after}).all()
        return [(int(i), str(k), str(o)) for i, k, o in rows]


def prune_changes(engine: Engine, now: datetime | None = None) -> int:
    """Delete the change rows older than `RETENTION` except the newest (ids keep growing); returns how many."""
    cutoff = (now or datetime.now(UTC)) - RETENTION
    newest = newest_change(engine)
    with engine.begin() as conn:
        done = conn.execute(delete(ChangeRow).where(col(ChangeRow.at) < cutoff, col(ChangeRow.id) < newest))
    return int(done.rowcount)


def create_change_table(engine: Engine) -> None:
    """Create the `changes` table if it is missing (schema version 6)."""
    SQLModel.metadata.create_all(engine, tables=[ChangeRow.__table__])  # pyright: ignore[reportAttributeAccessIssue]

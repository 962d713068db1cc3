"""Virtual servers added through the admin API (the config file's are not stored), one row each.

Every write records a `virtual_servers` change in its own transaction (`hub.store.changes`), so every other hub
process reloads them (`hub.doors.mcp_virtual_store`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from hub.store.admin_tables import now_utc, writing
from hub.store.changes import record_change
from hub.store.tables import insert_new

KIND = "virtual_servers"
"""The change-log kind of a virtual server change."""


class VirtualServerRow(SQLModel, table=True):
    """A virtual server added at run time."""

    __tablename__ = "virtual_servers"  # pyright: ignore[reportAssignmentType]

    name: str = Field(primary_key=True)
    config: str
    """Its definition as JSON (`hub.settings.VirtualServerConfig`)."""
    created_at: datetime
    updated_at: datetime


class VirtualServerStore:
    """CRUD for the stored virtual servers over the hub's engine (the table is created when missing)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        VirtualServerRow.metadata.create_all(engine, tables=[VirtualServerRow.__table__])  # pyright: ignore[reportAttributeAccessIssue]

    def rows(self) -> list[VirtualServerRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(VirtualServerRow).order_by(col(VirtualServerRow.name))))

    def get(self, name: str) -> VirtualServerRow | None:
        with Session(self.engine) as s:
            return s.get(VirtualServerRow, name)

    def create(self, name: str, config: dict[str, Any], session: Session | None = None) -> None:
        """Insert a new virtual server.

        Raises:
            DuplicateName: one with that name exists (also when another writer stored it first).
        """
        now = now_utc()
        row = VirtualServerRow(name=name, config=orjson.dumps(config).decode(), created_at=now, updated_at=now)
        with writing(self.engine, session) as s:
            insert_new(s, row, f"a virtual server named '{name}'")
            record_change(s, KIND)

    def save(self, name: str, config: dict[str, Any], session: Session | None = None) -> None:
        with writing(self.engine, session) as s:
            existing = s.get(VirtualServerRow, name)
            now = now_utc()
            created = existing.created_at if existing else now
            s.merge(
                VirtualServerRow(name=name, config=orjson.dumps(config).decode(), created_at=created, updated_at=now)
            )
            record_change(s, KIND)

    def delete(self, name: str, session: Session | None = None) -> bool:
        with writing(self.engine, session) as s:
            row = s.get(VirtualServerRow, name)
            if row is None:
                return False
            s.delete(row)
            record_change(s, KIND)
            return True

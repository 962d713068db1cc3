"""Stored Responses API responses: which deployment holds each one, whose it is, and the hub's copy of each turn.

A response created through the hub with `store` on is recorded here before its id reaches the client, in the
shared database, so that any replica can route a request that continues it (`previous_response_id`) to the
deployment and provider key that hold its state upstream, and refuse it to any other virtual key. The hub also
keeps its own copy of the turn (the request's input items and the response with its output items), capped in
size: with the copies of a whole chain it can rebuild the conversation as plain `input` for another deployment
when the one holding the state is down, and answer a read when the upstream cannot.

An in-process cache of the routing facts sits in front of the table (a record never changes once written; a
deletion through this process drops its entry). Rows older than the retention are purged in the background.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import orjson
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from hub.store.response_tables import ResponseRow

__all__ = ["ResponseRecord", "ResponseStore", "Turn"]

logger = logging.getLogger(__name__)
_CACHED = 8192
"""Routing records kept in memory (least recently used go first)."""


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """Where a stored response lives and whose it is."""

    id: str
    key_id: str
    provider: str
    model: str
    provider_key: str
    previous_id: str | None


@dataclass(frozen=True, slots=True)
class Turn:
    """The hub's copy of one stored response: the request's input items and the response object."""

    record: ResponseRecord
    input: list[Any]
    response: dict[str, Any]


def _table() -> Table:
    table: Any = ResponseRow.__table__  # pyright: ignore[reportAttributeAccessIssue]
    return table


class ResponseStore:
    """The `responses` table with a cache in front. Methods run the blocking database work in a worker thread."""

    def __init__(self, engine: Engine, *, max_state_bytes: int) -> None:
        """Create the table if missing. `max_state_bytes` caps the copy of one turn (input plus response JSON)."""
        self._engine = engine
        self._table = _table()
        self._max = max_state_bytes
        self._cache: OrderedDict[str, ResponseRecord] = OrderedDict()
        SQLModel.metadata.create_all(engine, tables=[self._table])

    # -- reading ---------------------------------------------------------------------------------------------------

    async def find(self, response_id: str) -> ResponseRecord | None:
        """The record of a stored response, or None when the hub never stored it (or it was deleted or purged)."""
        cached = self._cache.get(response_id)
        if cached is not None:
            self._cache.move_to_end(response_id)
            return cached
        record = await anyio.to_thread.run_sync(self._find, response_id)
        if record is not None:
            self._remember(record)
        return record

    async def turn(self, response_id: str) -> Turn | None:
        """The hub's copy of a stored response, or None when it has none (unknown, or over the cap)."""
        return await anyio.to_thread.run_sync(self._turn, response_id)

    async def chain(self, previous_id: str, *, max_turns: int = 1000) -> list[Turn] | None:
        """The copies of a conversation up to `previous_id`, oldest first; None when any turn of it has no copy (or
        the chain is longer than `max_turns`)."""
        return await anyio.to_thread.run_sync(self._chain, previous_id, max_turns)

    # -- writing ---------------------------------------------------------------------------------------------------

    async def save(self, record: ResponseRecord, input_items: list[Any], response: dict[str, Any]) -> None:
        """Record a stored response (and the copy of its turn when it fits the cap); replaces an earlier record of
        the same id (a background response read again)."""
        kept_input = orjson.dumps(input_items).decode()
        kept_response = orjson.dumps(response).decode()
        if len(kept_input) + len(kept_response) > self._max:
            kept_input = kept_response = None
        row = {
            "id": record.id,
            "key_id": record.key_id,
            "provider": record.provider,
            "model": record.model,
            "provider_key": record.provider_key,
            "previous_id": record.previous_id,
            "created_at": datetime.now(UTC),
            "input": kept_input,
            "response": kept_response,
        }
        await anyio.to_thread.run_sync(self._save, row)
        self._remember(record)

    async def forget(self, response_id: str) -> None:
        """Delete a stored response's record and copy."""
        self._cache.pop(response_id, None)
        await anyio.to_thread.run_sync(self._delete, response_id)

    async def purge(self, older_than: datetime) -> int:
        """Delete every record created before `older_than`; returns how many went."""
        self._cache.clear()
        return await anyio.to_thread.run_sync(self._purge, older_than)

    async def run_retention(self, keep: timedelta | None, interval: float) -> None:
        """Purge records older than `keep` now and every `interval` seconds (nothing when `keep` is None)."""
        if keep is None:
            return
        while True:
            try:
                await self.purge(datetime.now(UTC) - keep)
            except Exception:
                logger.exception("purging stored responses failed")
            await anyio.sleep(interval)

    # -- the blocking parts -----------------------------------------------------------------------------------------

    def _remember(self, record: ResponseRecord) -> None:
        self._cache[record.id] = record
        self._cache.move_to_end(record.id)
        if len(self._cache) > _CACHED:
            self._cache.popitem(last=False)

    def _row(self, response_id: str) -> Any:
        t = self._table
        with self._engine.connect() as conn:
            return conn.execute(select(t).where(t.c.id == response_id)).first()

    def _find(self, response_id: str) -> ResponseRecord | None:
        row = self._row(response_id)
        return _record(row) if row is not None else None

    def _turn(self, response_id: str) -> Turn | None:
        row = self._row(response_id)
        if row is None or row.input is None or row.response is None:
            return None
        return Turn(_record(row), orjson.loads(row.input), orjson.loads(row.response))

    def _chain(self, previous_id: str, max_turns: int) -> list[Turn] | None:
        turns: list[Turn] = []
        next_id: str | None = previous_id
        while next_id is not None:
            if len(turns) >= max_turns:
                return None
            turn = self._turn(next_id)
            if turn is None:
                return None
            turns.append(turn)
            next_id = turn.record.previous_id
        turns.reverse()
        return turns

    def _save(self, row: dict[str, Any]) -> None:
        t = self._table
        with self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.id == row["id"]))
            conn.execute(insert(t).values(**row))

    def _delete(self, response_id: str) -> None:
        t = self._table
        with self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.id == response_id))

    def _purge(self, older_than: datetime) -> int:
        t = self._table
        with self._engine.begin() as conn:
            return conn.execute(delete(t).where(t.c.created_at < older_than)).rowcount


def _record(row: Any) -> ResponseRecord:
    return ResponseRecord(row.id, row.key_id, row.provider, row.model, row.provider_key, row.previous_id)

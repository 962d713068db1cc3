"""The change log and its watcher, without a running hub: what a write records, and what a poll hands on."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from sqlalchemy import insert, select
from sqlmodel import col

from hub.guardrails import GuardrailConfig
from hub.guardrails.rules import GuardrailRuleStore
from hub.runtime.changes import GAP_WAIT_S, RESYNC_S, ChangeWatcher
from hub.store.admin_tables import AdminStore, TeamRow, now_utc
from hub.store.changes import ChangeRow, changes_after, origin, prune_changes
from hub.store.sql import SqlStore
from hub.store.tables import DuplicateName
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

SECRET = "ahk-watcher-test-secret-00000000000000000000000"


@pytest.fixture
def stores(tmp_path: Path) -> Generator[tuple[SqlStore, SqlStore]]:
    """Two hubs' stores on one database: `ours` (the watcher's) and `theirs` (another process's)."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    ours, theirs = SqlStore(url), SqlStore(url)
    AdminStore(ours.engine)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def test_a_write_records_its_kind_in_its_transaction_and_a_failed_one_records_nothing(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    ours, theirs = stores
    theirs.create_key("alice", SECRET, {"tools": ["*"]})
    AdminStore(theirs.engine).save(TeamRow(name="payments", source="api", created_at=now_utc(), updated_at=now_utc()))
    rows = changes_after(ours.engine, 0)
    assert [(kind, made_by) for _id, kind, made_by in rows] == [
        ("keys", origin(theirs.engine)),
        ("governance", origin(theirs.engine)),
    ]
    assert origin(theirs.engine) != origin(ours.engine)
    with pytest.raises(DuplicateName):
        theirs.create_key("alice", SECRET.replace("0", "1"), {"tools": ["*"]})
    assert changes_after(ours.engine, rows[-1][0]) == [], "a rolled-back change was recorded"


async def test_a_wake_hands_exactly_the_changed_kinds_to_their_followers_and_skips_its_own(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    """The poll interval is an hour: only the injected trigger (`wake`, what a Redis notification calls) polls."""
    ours, theirs = stores
    watcher = ChangeWatcher(ours.engine, interval=3600)
    called: list[tuple[str, str]] = []
    keys_seen = anyio.Event()

    async def keys(versions: Mapping[str, str]) -> None:
        called.append(("keys", versions["keys_version"]))
        keys_seen.set()

    async def guardrails(versions: Mapping[str, str]) -> None:
        called.append(("guardrails", versions.get("guardrails_version", "0")))

    watcher.follow({"keys"}, keys)
    watcher.follow({"guardrails"}, guardrails)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        assert len(called) == 2, "the start catches up once with every follower"
        called.clear()
        keys_seen = anyio.Event()
        ours.create_key("own", SECRET, {"tools": ["*"]})  # this hub's own change: applied by whoever made it
        theirs.create_key("bob", SECRET.replace("0", "2"), {"tools": ["*"]})
        watcher.wake()
        with anyio.fail_after(PATIENCE):
            await keys_seen.wait()
        assert called == [("keys", theirs.keys_version())]
        polls = watcher.polls
        called.clear()
        ours.create_key("own-2", SECRET.replace("0", "3"), {"tools": ["*"]})
        assert await watcher.poll() == frozenset(), "a change of its own was handed on"
        GuardrailRuleStore(theirs.engine).save(GuardrailConfig(name="pii", kind="pii"))
        assert await watcher.poll() == {"guardrails"}
        assert [kind for kind, _version in called] == ["guardrails"]
        assert watcher.polls == polls + 2
        tg.cancel_scope.cancel()


async def test_a_change_that_commits_after_a_newer_id_is_still_followed_until_its_wait_ends(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    """PostgreSQL hands out ids when rows are inserted, not when they commit: id 2 may appear after id 3."""
    ours, _theirs = stores
    now = [0.0]
    watcher = ChangeWatcher(ours.engine, interval=3600, clock=lambda: now[0])

    def add(change_id: int, kind: str) -> None:
        row = {"id": change_id, "kind": kind, "origin": "other", "at": datetime.now(UTC)}
        with ours.engine.begin() as conn:
            conn.execute(insert(ChangeRow), [row])

    add(1, "keys")
    assert await watcher.poll() == {"keys"}
    add(3, "servers")
    assert await watcher.poll() == {"servers"}
    add(2, "pins")  # committed late, below the newest id seen
    assert await watcher.poll() == {"pins"}
    assert await watcher.poll() == frozenset(), "a change was handed on twice"
    add(5, "keys")
    assert await watcher.poll() == {"keys"}
    now[0] += GAP_WAIT_S + 1  # id 4 rolled back: it stops being awaited
    assert await watcher.poll() == frozenset()
    add(4, "guardrails")
    assert await watcher.poll() == frozenset()


def test_old_change_rows_are_pruned_but_the_newest_id_stays(stores: tuple[SqlStore, SqlStore]) -> None:
    ours, theirs = stores
    theirs.create_key("alice", SECRET, {"tools": ["*"]})
    theirs.revoke_key("alice")
    later = datetime(2999, 1, 1, tzinfo=UTC)
    assert prune_changes(ours.engine, later) == 1
    with ours.engine.connect() as conn:
        assert [kind for (kind,) in conn.execute(select(col(ChangeRow.kind)))] == ["keys"]


async def test_a_follower_that_failed_on_a_change_catches_up_at_the_next_resync(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    ours, theirs = stores
    now = [0.0]
    watcher = ChangeWatcher(ours.engine, interval=3600, clock=lambda: now[0])
    seen: list[str] = []
    failing = [True]

    async def keys(versions: Mapping[str, str]) -> None:
        if failing[0]:
            raise RuntimeError("the database went away for a moment")
        seen.append(versions["keys_version"])

    watcher.follow({"keys"}, keys)
    theirs.create_key("carol", SECRET, {"tools": ["*"]})
    await watcher.tick()  # the follower fails; the row counts as read
    failing[0] = False
    await watcher.tick()
    assert seen == [], "nothing new: no follower is called between resyncs"
    now[0] += RESYNC_S
    await watcher.tick()
    assert seen == [theirs.keys_version()]

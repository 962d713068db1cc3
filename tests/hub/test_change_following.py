"""A running hub follows changes made by other processes (keys, guardrails) through one read of the change log
per interval, instead of one query per kind of change; the meta versions are read only once something changed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from hub.app import open_hub
from hub.guardrails import GuardrailConfig
from hub.guardrails.rules import GuardrailRuleStore
from hub.settings import settings_from_dict
from hub.store.sql import SqlStore, read_all_meta
from tests.hub.harness import base_config, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


async def test_changes_from_another_process_arrive_through_one_change_log_read_per_interval(tmp_path: Path) -> None:
    async with running_hub(base_config({}), tmp_path) as running:
        hub = running.hub
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(hub.store.engine, "before_cursor_execute", seen)
        try:
            with anyio.fail_after(PATIENCE):  # three intervals with nothing changing (0.5 s each when idle)
                while len([s for s in statements if "FROM changes" in s]) < 3:  # noqa: ASYNC110 - a list, no event
                    await anyio.sleep(0.05)
            idle = list(statements)
            assert all("FROM changes" in s for s in idle), f"other queries while idle: {idle}"

            other = SqlStore(hub.store.url)  # another process's view of the same database
            try:
                other.create_key("carol", "ahk-carol-00000000000000000000000000000000000", {"tools": ["*"]})
                GuardrailRuleStore(other.engine).save(GuardrailConfig(name="pii-late", kind="pii"))
                assert {"keys_version", "guardrails_version"} <= set(read_all_meta(other.engine))
            finally:
                other.close()
            with anyio.fail_after(PATIENCE):
                while "carol" not in {k.name for k in hub.keyring.keys()} or not (  # noqa: ASYNC110
                    hub.guardrails and {r.name for r in hub.guardrails.stored} == {"pii-late"}
                ):
                    await anyio.sleep(0.05)
        finally:
            event.remove(hub.store.engine, "before_cursor_execute", seen)


DAVE = "ahk-dave-test-secret-000000000000000000000000"


async def test_a_key_installed_while_the_follower_reads_the_keys_survives_what_the_follower_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower reads the keys in a worker thread. A key created meanwhile through this process (the admin API
    installs it at once, as `reload_keys` does) must not vanish when the follower then installs the older ring it
    read: a request with the new key would be refused until the next poll."""
    settings = settings_from_dict(
        {**base_config({}), "hub": {"database": f"sqlite:///{tmp_path / 'hub.db'}"}}, tmp_path / "agenthub.toml"
    )
    hub = open_hub(settings)
    try:
        hub.sync_config_keys()
        hub.reload_keys()
        read, release = threading.Event(), threading.Event()
        direct = hub.store.active_keys

        def paused() -> Any:
            ring = direct()  # what the store holds now, before dave
            read.set()
            release.wait(PATIENCE)
            return ring

        monkeypatch.setattr(hub.store, "active_keys", paused)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub._follow_keys, {"keys_version": "moved by another process"})
            assert await anyio.to_thread.run_sync(read.wait, PATIENCE)
            monkeypatch.setattr(hub.store, "active_keys", direct)
            hub.store.create_key("dave", DAVE, {"tools": ["*"]}, source="api")
            hub.reload_keys()
            assert "dave" in {key.name for key in hub.keyring.keys()}
            release.set()
        assert "dave" in {key.name for key in hub.keyring.keys()}, "the follower installed the ring it read earlier"
    finally:
        hub.store.close()

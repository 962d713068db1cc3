"""A running hub follows changes made by other processes (keys, guardrails) through one read of the meta table
per interval, instead of one query per kind of change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from hub.guardrails import GuardrailConfig
from hub.guardrails.rules import GuardrailRuleStore
from hub.store.sql import SqlStore, read_all_meta
from tests.hub.harness import base_config, running_hub

pytestmark = pytest.mark.anyio


async def test_changes_from_another_process_arrive_through_one_meta_read_per_interval(tmp_path: Path) -> None:
    async with running_hub(base_config({}), tmp_path) as running:
        hub = running.hub
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(hub.store.engine, "before_cursor_execute", seen)
        try:
            await anyio.sleep(1.6)  # three intervals with nothing changing
            idle = [s for s in statements if "meta" in s]
            assert idle, "the hub stopped following changes"
            assert all("WHERE" not in s for s in idle), f"per-kind version queries while idle: {idle}"

            other = SqlStore(hub.store.url)  # another process's view of the same database
            try:
                other.create_key("carol", "ahk-carol-00000000000000000000000000000000000", {"tools": ["*"]})
                GuardrailRuleStore(other.engine).save(GuardrailConfig(name="pii-late", kind="pii"))
                assert {"keys_version", "guardrails_version"} <= set(read_all_meta(other.engine))
            finally:
                other.close()
            with anyio.fail_after(10):
                while "carol" not in {k.name for k in hub.keyring.keys()} or not (  # noqa: ASYNC110
                    hub.guardrails and {r.name for r in hub.guardrails.stored} == {"pii-late"}
                ):
                    await anyio.sleep(0.05)
        finally:
            event.remove(hub.store.engine, "before_cursor_execute", seen)

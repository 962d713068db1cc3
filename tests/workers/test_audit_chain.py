"""Two workers appending to the admin audit chain at the same time, through one SQLite file: every change gets its
entry and the chain stays one valid chain (`agenthub audit verify`)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import httpx2
import pytest

from llm.testing import FakeScript, Reply, openai_app, serve
from tests.tools.patience import PATIENCE
from tests.workers.harness import AGENTHUB, PROVIDER_KEY, hub_process, paused, wait_workers, write_config

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-for-the-workers-tests-0000000000"
AUDIT_KEY = "w" * 40
CHANGES = 24


async def test_concurrent_admin_changes_on_two_workers_make_one_valid_chain(tmp_path: Path) -> None:
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider)
        async with hub_process(config, 2, env={"AGENTHUB_ADMIN_TOKEN": ADMIN}) as hub:
            statuses: list[int] = []

            async def create(name: str) -> None:
                async with httpx2.AsyncClient(timeout=PATIENCE) as client:  # a connection of its own
                    answer = await client.post(
                        hub.url("/api/v1/keys"),
                        json={"name": name, "tools": ["*"]},
                        headers={"authorization": f"Bearer {ADMIN}"},
                    )
                    statuses.append(answer.status_code)

            first, second = await wait_workers(hub.pid, 2)
            with paused(first):  # each worker makes changes of its own, then both at once
                await create("only-second")
            with paused(second):
                await create("only-first")
            async with anyio.create_task_group() as tg:
                for n in range(CHANGES):
                    tg.start_soon(create, f"key-{n}")
            assert statuses == [201] * (CHANGES + 2)
    env = {**os.environ, "AGENTHUB_AUDIT_KEY": AUDIT_KEY}
    with anyio.fail_after(PATIENCE):
        verified = await anyio.run_process([AGENTHUB, "audit", "verify", "--config", str(config)], env=env, check=False)
    out = verified.stdout.decode()
    assert verified.returncode == 0, out + verified.stderr.decode()
    checked = int(out.split("audit log intact: ")[1].split()[0])
    assert checked >= CHANGES + 2

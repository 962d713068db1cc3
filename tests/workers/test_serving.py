"""`agenthub serve --workers 2`: both workers serve the one socket, the start-up key is printed once and works on
each, a killed worker is started again, and rate limits are exactly those of one worker."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from pathlib import Path

import anyio
import pytest

from llm.testing import FakeScript, Reply, openai_app, serve
from tests.workers.harness import PROVIDER_KEY, chat, hub_process, paused, wait_output, wait_workers, write_config

pytestmark = pytest.mark.anyio


async def test_each_worker_serves_and_the_generated_key_is_printed_once_and_works_on_each(tmp_path: Path) -> None:
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider, secret=None)
        async with hub_process(config, 2) as hub:
            output = hub.output()
            lines = re.findall(r"Virtual key 'alice' \(shown once, store it now\): (\S+)", output)
            assert len(lines) == 1, output
            secret = lines[0]
            assert output.count("AgentHub is serving MCP at") == 1
            first, second = await wait_workers(hub.pid, 2)
            with paused(first):  # only the second can accept
                answer = await chat(hub, secret)
                assert answer.status_code == 200, answer.text
            with paused(second):
                answer = await chat(hub, secret)
                assert answer.status_code == 200, answer.text
            answers = [await chat(hub, secret) for _ in range(6)]
            assert [a.status_code for a in answers] == [200] * 6


async def test_a_killed_worker_is_started_again_and_calls_keep_succeeding(tmp_path: Path) -> None:
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider)
        async with hub_process(config, 2) as hub:
            first, second = await wait_workers(hub.pid, 2)
            os.kill(second, signal.SIGKILL)
            for _ in range(4):  # the first worker takes every connection meanwhile
                assert (await chat(hub)).status_code == 200
            survivors = await wait_workers(hub.pid, 2, without=frozenset({second}))
            assert first in survivors
            (restarted,) = set(survivors) - {first}
            await wait_output(hub, f"(pid {restarted}) serves")
            assert "ended (signal SIGKILL); starting it again" in hub.output()
            with paused(first):  # only the new worker can accept
                answer = await chat(hub)
                assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_rate_limit_admits_exactly_its_calls_across_workers(tmp_path: Path, workers: int) -> None:
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider, rate_limit='{ requests = 5, period = "3650d" }')
        async with hub_process(config, workers) as hub:
            statuses: list[int] = []

            async def one() -> None:
                statuses.append((await chat(hub)).status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(16):
                    tg.start_soon(one)
            assert sorted(statuses) == [200] * 5 + [429] * 11
            if workers == 2:  # each worker sees the count the other made: a refused key stays refused on both
                pids = await wait_workers(hub.pid, 2)
                for pid in pids:
                    with paused(pid):
                        assert (await chat(hub)).status_code == 429


async def test_the_request_log_keeps_every_call_of_both_workers(tmp_path: Path) -> None:
    calls = 60
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider)
        async with hub_process(config, 2) as hub:
            statuses: list[int] = []

            async def one() -> None:
                statuses.append((await chat(hub)).status_code)

            first, second = await wait_workers(hub.pid, 2)
            for pid in (first, second):  # some calls certainly on each worker
                with paused(pid):
                    await one()
            async with anyio.create_task_group() as tg:
                for _ in range(calls - 2):
                    tg.start_soon(one)
            assert statuses == [200] * calls
            os.kill(hub.pid, signal.SIGTERM)  # the workers flush their logs as they stop
            assert await anyio.to_thread.run_sync(hub.process.wait) == 0
    with sqlite3.connect(tmp_path / "hub.db") as db:
        (logged,) = db.execute("SELECT count(*) FROM request_log WHERE operation = 'llm.chat'").fetchone()
    assert logged == calls

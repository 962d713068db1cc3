"""Signals to the supervisor of `agenthub serve --workers 2`: SIGTERM drains a stream in flight before the hub exits 0;
SIGHUP reloads the configuration with no connection refused, and a configuration that does not validate leaves the
running workers serving."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import httpx2
import pytest
from openai import AsyncOpenAI

from llm.testing import FakeScript, Reply, openai_app, serve
from tests.tools.patience import PATIENCE
from tests.workers.harness import (
    ALICE,
    PROVIDER_KEY,
    GatedStream,
    chat,
    hub_process,
    wait_output,
    wait_workers,
    write_config,
)

pytestmark = pytest.mark.anyio


async def test_sigterm_lets_a_stream_in_flight_finish_then_the_hub_exits_0(tmp_path: Path) -> None:
    gated = GatedStream()
    async with serve(gated.app()) as provider:
        config = write_config(tmp_path, provider)
        async with hub_process(config, 2, env={"AGENTHUB_LOG_LEVEL": "info"}) as hub:
            client = AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0, timeout=PATIENCE)
            stream = await client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            pieces: list[str] = []
            with anyio.fail_after(PATIENCE):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        pieces.append(chunk.choices[0].delta.content)
                    if pieces == ["first"]:
                        os.kill(hub.pid, signal.SIGTERM)  # the supervisor, which tells the workers
                        await wait_output(hub, "Waiting for connections to close")  # the worker drains our stream
                        gated.release.set()
            assert "".join(pieces) == "first second"
            await client.close()
            code = await anyio.to_thread.run_sync(hub.process.wait, PATIENCE)
            assert code == 0, hub.output()[-3000:]
            assert "stopping: draining 2 workers" in hub.output()


async def test_sighup_reloads_the_configuration_without_refusing_a_connection(tmp_path: Path) -> None:
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider)
        async with hub_process(config, 2) as hub:
            old = await wait_workers(hub.pid, 2)
            statuses: list[int] = []
            failures: list[BaseException] = []
            refused = anyio.Event()
            flowing = anyio.Event()

            async def loop_calls() -> None:
                while not refused.is_set():
                    try:
                        status = (await chat(hub)).status_code
                    except httpx2.HTTPError as exc:
                        failures.append(exc)
                        continue
                    statuses.append(status)
                    flowing.set()
                    if status != 200:
                        refused.set()

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for _ in range(3):
                        tg.start_soon(loop_calls)
                    await flowing.wait()  # calls flow before the reload
                    write_config(tmp_path, provider, models='["other-*"]')  # the key may no longer use `fast`
                    os.kill(hub.pid, signal.SIGHUP)
                    await wait_output(hub, "configuration reloaded")
            assert failures == []
            # While the old workers drain, a call they accepted still answers under the old configuration, so a 200
            # may come after the first refusal; every answer is one or the other, and none is a connection error.
            refusals = set(statuses) - {200}
            assert statuses[0] == 200 and len(refusals) == 1
            refusal = refusals.pop()
            assert refusal in (403, 404)  # a model the key may not use reads as unknown
            await wait_workers(hub.pid, 2, without=frozenset(old))
            assert (await chat(hub)).status_code == refusal


async def test_sighup_with_a_broken_configuration_keeps_the_running_workers(tmp_path: Path) -> None:
    async with serve(openai_app(FakeScript(default=Reply("hello")), keys=[PROVIDER_KEY])) as provider:
        config = write_config(tmp_path, provider)
        async with hub_process(config, 2) as hub:
            running = await wait_workers(hub.pid, 2)
            config.write_text(config.read_text() + "\n[hub]\nworkers = 0\n")
            os.kill(hub.pid, signal.SIGHUP)
            output = await wait_output(hub, "reload refused")
            assert "config error:" in output
            assert worker_set(await wait_workers(hub.pid, 2)) == worker_set(running)
            assert [(await chat(hub)).status_code for _ in range(4)] == [200] * 4


def worker_set(pids: list[int]) -> frozenset[int]:
    return frozenset(pids)

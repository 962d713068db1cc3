"""An `Upstream` supervised in the test's task group, connected to a (scripted) Streamable HTTP upstream."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
import httpx2

from connectors.config import HttpConfig
from connectors.rawhttp import RawHttpSession
from connectors.upstream import Upstream


@asynccontextmanager
async def running_upstream(
    url: str, *, auth: httpx2.Auth | None = None, mode: str = "legacy", name: str = "scripted"
) -> AsyncGenerator[Upstream]:
    """A ready `Upstream` for `url` with its lean sessions open; stopped when the block ends."""
    upstream = Upstream(HttpConfig(name=name, transport="http", url=url), mode=mode, http_auth=auth)
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        try:
            assert await upstream.wait_ready(15), upstream.health.error
            assert upstream._fast is not None, "the lean sessions are open"
            yield upstream
        finally:
            upstream.stop()


@asynccontextmanager
async def lean_session(url: str, *, auth: httpx2.Auth | None = None) -> AsyncGenerator[RawHttpSession]:
    """One open lean session with `url`, closed when the block ends."""
    session = RawHttpSession("scripted", url, {}, auth=auth)
    await session.open()
    try:
        yield session
    finally:
        await session.aclose()

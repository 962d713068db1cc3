"""Shared test configuration: anyio on asyncio (uvicorn and the MCP SDK's HTTP pieces need it)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

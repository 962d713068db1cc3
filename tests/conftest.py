"""Shared test configuration: anyio on asyncio (uvicorn and the MCP SDK's HTTP pieces need it), and property
tests that check what they find, never how fast they find it (no `deadline`, no `too_slow` health check: on a
busy machine both fail a correct test)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("agenthub", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("agenthub")

# The hubs the tests start serve from one process unless a test asks for workers (`--workers` wins over this):
# what they check is one process's behaviour, and tests/workers checks the supervised one.
os.environ.setdefault("AGENTHUB_WORKERS", "1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

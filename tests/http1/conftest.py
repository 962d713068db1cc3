"""The HTTP/1.1 client runs on both event loops the hub uses: plain asyncio (tests, embedded use) and uvloop
(`agenthub serve`), so each test here runs on both."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=[pytest.param(False, id="asyncio"), pytest.param(True, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return "asyncio", {"use_uvloop": request.param}

"""Small helpers shared by the admin tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2

from tests.admin.conftest import ADMIN


@asynccontextmanager
async def admin_client(base: str, token: str = ADMIN) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client for `base` that presents `token` as the admin bearer token."""
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "admin-tests/1.0"}
    async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=20) as http:
        yield http


def tool_call(name: str, arguments: str = "{}") -> dict[str, Any]:
    """A `POST /v1/mcp/tool/execute` body."""
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}

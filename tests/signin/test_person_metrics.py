"""A signed-in person counts in the metrics like a key: under their name (`user:<email>`) in the `key` label, which
keeps its bound (each metric's label sets are capped, past which they count as `other`)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.hub.harness import mcp_client
from tests.signin.helpers import signin_hub
from tests.signin.test_sign_in_refusals import pkce, redeem, register, sign_in
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKEN = "scrape-token-for-the-sign-in-tests"


async def test_a_persons_calls_and_refusals_are_counted_under_their_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_METRICS_TOKEN", TOKEN)
    grants = [{"group": "platform-devs", "tools": ["fixture__echo"], "rate_limit": {"requests": 1, "period": "1h"}}]
    extra = {"metrics": {"token": "env:T_METRICS_TOKEN"}}
    async with signin_hub(tmp_path, grants=grants, extra=extra) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        client_id = (await register(http, hub)).json()["client_id"]
        verifier, challenge = pkce()
        landed = await sign_in(hub, client_id, challenge)
        access = (await redeem(http, hub, client_id, landed["code"], verifier)).json()["access_token"]
        async with mcp_client(hub.url(), access) as client:
            assert not (await client.call_tool("fixture__echo", {"message": "hi"})).is_error
            with pytest.raises(MCPError) as limited:
                await client.call_tool("fixture__echo", {"message": "hi"})
            assert limited.value.error.code == -32005
            scraped = await http.get(hub.url("/metrics"), headers={"authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200
        lines = scraped.text.splitlines()
        assert 'agenthub_rejections_total{key="user:dana@example.com",reason="rate_limit"} 1.0' in lines
        assert 'agenthub_mcp_sessions{key="user:dana@example.com"} 1.0' in lines
        assert access not in scraped.text

"""Client credentials against a real authorization server, discovered from the upstream's 401."""

from __future__ import annotations

import anyio
import pytest

from connectors.auth import MemoryTokenStore, OAuth2Auth, UpstreamAuths
from tests.auth.conftest import upstream_client, whoami
from tests.auth.servers import HUB_CLIENT_ID, HUB_CLIENT_SECRET, oauth_stack
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


def cc_config(**extra: object) -> OAuth2Auth:
    return OAuth2Auth.model_validate(
        {
            "type": "oauth2",
            "grant": "client_credentials",
            "client_id": HUB_CLIENT_ID,
            "client_secret": HUB_CLIENT_SECRET,
            "scopes": ["tickets.read"],
            **extra,
        }
    )


async def test_client_credentials_discovered_from_the_401_reach_the_tool() -> None:
    async with oauth_stack() as stack:
        auths = UpstreamAuths(MemoryTokenStore())
        auths.add("tickets", stack.upstream_url, cc_config(), insecure_loopback=True)
        with anyio.fail_after(PATIENCE):
            async with upstream_client(auths, "tickets", stack.upstream_url) as client:
                assert await whoami(client) == HUB_CLIENT_ID
                assert await whoami(client) == HUB_CLIENT_ID
        auth = auths.get("tickets")
        assert auth is not None
        assert stack.provider.grants["client_credentials"] == 1
        issued = next(iter(stack.provider.access.values()))
        assert issued.resource == stack.upstream_url
        assert issued.scopes == ["tickets.read"]
        await auths.aclose()

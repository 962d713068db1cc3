"""Two hubs on one database (replicas behind one address): a token issued by one works at the other, and a
revocation at one reaches the other through its poll of the shared database (every 0.5 s, see
`Hub._follow_changes`); the test waits for that, bounded only against a hang."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from tests.admin.helpers import hub_on_port
from tests.hub.harness import RunningHub
from tests.signin.helpers import identity_provider, signin_config
from tests.signin.test_sign_in_refusals import open_session, pkce, redeem, register, sign_in
from tests.tools import free_port
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _until(http: httpx2.AsyncClient, hub: RunningHub, token: str, status: int) -> None:
    with anyio.fail_after(PATIENCE):
        while (await open_session(http, hub.url("/mcp"), token)).status_code != status:  # noqa: ASYNC110 - over HTTP
            await anyio.sleep(0.05)


async def test_a_token_from_one_replica_works_at_the_other_until_revoked_there(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    async with identity_provider(port_a) as idp:
        config = signin_config(port_a, idp)  # both serve the same public issuer
        async with (
            hub_on_port(config, tmp_path, port_a) as a,
            hub_on_port(config, tmp_path, port_b) as b,
            httpx2.AsyncClient(timeout=PATIENCE) as http,
        ):
            client_id = (await register(http, a)).json()["client_id"]
            verifier, challenge = pkce()
            landed = await sign_in(a, client_id, challenge)
            tokens = (await redeem(http, a, client_id, landed["code"], verifier)).json()
            access = tokens["access_token"]
            assert (await open_session(http, a.url("/mcp"), access)).status_code == 200
            await _until(http, b, access, 200)

            revoked = await http.post(b.url("/signin/revoke"), data={"token": access, "client_id": client_id})
            assert revoked.status_code == 200
            assert (await open_session(http, b.url("/mcp"), access)).status_code == 401
            await _until(http, a, access, 401)


async def test_a_registration_flood_spread_over_both_replicas_gets_the_limit_once(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    async with identity_provider(port_a) as idp:
        config = signin_config(port_a, idp, registrations_per_source=4, max_clients=100)
        async with (
            hub_on_port(config, tmp_path, port_a) as a,
            hub_on_port(config, tmp_path, port_b) as b,
            httpx2.AsyncClient(timeout=PATIENCE) as http,
        ):
            statuses = [(await register(http, hub)).status_code for hub in (a, b) * 4]
            assert statuses == [201] * 4 + [429] * 4

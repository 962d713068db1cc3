"""Bad input at the hub's authorization server: a wrong PKCE verifier, a replayed code, a wrong resource, a token
for another endpoint, a redirect the operator does not allow, and a registration flood."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest

from tests.hub.harness import RunningHub
from tests.signin.helpers import CLIENT_REDIRECT, Browser, signin_hub
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def register(http: httpx2.AsyncClient, hub: RunningHub, redirect: str = CLIENT_REDIRECT) -> httpx2.Response:
    body = {"redirect_uris": [redirect], "client_name": "refusals", "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}  # fmt: skip
    return await http.post(hub.url("/signin/register"), json=body)


def authorize_url(hub: RunningHub, client_id: str, challenge: str, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": CLIENT_REDIRECT, "state": "st-1",
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": hub.url("/mcp")}  # fmt: skip
    params.update(extra)
    return hub.url("/signin/authorize") + "?" + urlencode(params)


async def sign_in(hub: RunningHub, client_id: str, challenge: str, user: str = "dana", **extra: str) -> dict[str, str]:
    browser = Browser(user)
    await browser.visit(authorize_url(hub, client_id, challenge, **extra))
    return browser.landed[-1]


async def redeem(http: httpx2.AsyncClient, hub: RunningHub, client_id: str, code: str, verifier: str) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": client_id,
            "redirect_uri": CLIENT_REDIRECT}  # fmt: skip
    return await http.post(hub.url("/signin/token"), data=form)


async def open_session(http: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    """Open an MCP session at `url` with `token` (200, or the refusal)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    return await http.post(url, json=INITIALIZE, headers=headers)


async def test_a_wrong_verifier_a_replayed_code_and_tokens_for_another_endpoint_are_refused(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        client_id = (await register(http, hub)).json()["client_id"]

        verifier, challenge = pkce()
        landed = await sign_in(hub, client_id, challenge)
        assert (landed["state"], landed["iss"]) == ("st-1", hub.base)
        wrong = await redeem(http, hub, client_id, landed["code"], pkce()[0])
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert (await redeem(http, hub, client_id, landed["code"], verifier)).json()["error"] == "invalid_grant"

        verifier, challenge = pkce()
        landed = await sign_in(hub, client_id, challenge)
        tokens = await redeem(http, hub, client_id, landed["code"], verifier)
        assert tokens.status_code == 200, tokens.text
        access = tokens.json()["access_token"]
        assert (await open_session(http, hub.url("/mcp"), access)).status_code == 200
        replayed = await redeem(http, hub, client_id, landed["code"], verifier)
        assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
        assert (await open_session(http, hub.url("/mcp"), access)).status_code == 401  # the replay revoked it

        landed = await sign_in(hub, client_id, challenge, resource="https://elsewhere.example/mcp")
        assert landed["error"] == "invalid_target" and "code" not in landed

        verifier, challenge = pkce()
        landed = await sign_in(hub, client_id, challenge, resource=hub.url("/mcp/fixture"))
        scoped = (await redeem(http, hub, client_id, landed["code"], verifier)).json()["access_token"]
        assert (await open_session(http, hub.url("/mcp/fixture"), scoped)).status_code == 200
        refused = await open_session(http, hub.url("/mcp"), scoped)
        assert refused.status_code == 401
        metadata = f'resource_metadata="{hub.base}/.well-known/oauth-protected-resource/mcp"'
        assert metadata in refused.headers["www-authenticate"]


async def test_a_person_without_a_grant_is_sent_back_with_access_denied(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        client_id = (await register(http, hub)).json()["client_id"]
        landed = await sign_in(hub, client_id, pkce()[1], user="alice")
        assert landed["error"] == "access_denied" and landed["iss"] == hub.base and landed["state"] == "st-1"
        assert "code" not in landed


async def test_redirects_the_operator_does_not_allow_are_refused(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        refused = await register(http, hub, "https://attacker.example/callback")
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri"
        client_id = (await register(http, hub)).json()["client_id"]
        other = authorize_url(hub, client_id, pkce()[1], redirect_uri="http://127.0.0.1:33418/elsewhere")
        response = await http.get(other)
        assert response.status_code == 400 and "location" not in response.headers
        plain = authorize_url(hub, client_id, pkce()[1], code_challenge_method="plain")
        refused_plain = await http.get(plain)
        assert refused_plain.status_code == 302 and "error=invalid_request" in refused_plain.headers["location"]


async def test_registrations_are_capped_and_rate_limited_per_source(tmp_path: Path) -> None:
    async with (
        signin_hub(tmp_path, max_clients=3, registrations_per_source=4) as hub,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
    ):
        statuses = [(await register(http, hub)).status_code for _ in range(3)]
        assert statuses == [201, 201, 201]
        capped = await register(http, hub)
        assert capped.status_code == 400 and "no more client registrations" in capped.json()["error_description"]
        flooded = await register(http, hub)
        assert flooded.status_code == 429 and flooded.headers["retry-after"] == "3600"


async def test_discovery_documents_name_the_endpoints(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        resource = (await http.get(hub.url("/.well-known/oauth-protected-resource/mcp/fixture"))).json()
        assert resource["resource"] == hub.url("/mcp/fixture") and resource["authorization_servers"] == [hub.base]
        server = (await http.get(hub.url("/.well-known/oauth-authorization-server"))).json()
        assert server["issuer"] == hub.base and server["code_challenge_methods_supported"] == ["S256"]
        assert server["authorization_response_iss_parameter_supported"] is True
        assert server["client_id_metadata_document_supported"] is True
        assert (await http.get(hub.url("/.well-known/openid-configuration"))).json() == server
        anonymous = await open_session(http, hub.url("/mcp/fixture"), "not-a-token")
        challenge = anonymous.headers["www-authenticate"]
        assert f'resource_metadata="{hub.base}/.well-known/oauth-protected-resource/mcp/fixture"' in challenge


async def test_broken_browser_steps_and_oversized_bodies_get_clear_errors(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        missing = await http.get(hub.url("/signin/login"))
        assert missing.status_code == 400 and "missing" in missing.json()["error"]["message"]
        forged = await http.get(hub.url("/signin/callback"), params={"code": "c", "state": "s"})
        assert forged.status_code == 400 and "state cookie" in forged.json()["error"]["message"]
        refused = await http.get(hub.url("/signin/callback"), params={"error": "access_denied", "state": "s"})
        assert refused.status_code == 400 and "refused the login" in refused.json()["error"]["message"]
        big = await http.post(hub.url("/signin/register"), content=b"{" + b" " * (128 * 1024) + b"}",
                              headers={"content-type": "application/json"})  # fmt: skip
        assert big.status_code == 413
        garbage = await http.post(hub.url("/signin/token"), data={"grant_type": "password", "client_id": "nobody"})
        assert garbage.status_code == 401 and garbage.json()["error"] == "invalid_client"

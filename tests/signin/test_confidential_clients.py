"""Confidential clients (RFC 7591 registrations that asked for a client secret): the hub keeps only a hash of the
secret it generated, and its token endpoint checks a presented secret against that hash, by `client_secret_post`
and by `client_secret_basic`; a wrong secret is refused as the SDK's authenticator refuses it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlmodel import Session, select

from hub.store.signin_tables import SignInClientRow
from tests.hub.harness import RunningHub
from tests.signin.helpers import CLIENT_REDIRECT, signin_hub
from tests.signin.test_sign_in_refusals import open_session, pkce, sign_in
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _register(http: httpx2.AsyncClient, hub: RunningHub, method: str) -> dict[str, Any]:
    body = {"redirect_uris": [CLIENT_REDIRECT], "client_name": "confidential", "token_endpoint_auth_method": method,
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}  # fmt: skip
    answer = await http.post(hub.url("/signin/register"), json=body)
    assert answer.status_code == 201, answer.text
    registered: dict[str, Any] = answer.json()
    assert registered["token_endpoint_auth_method"] == method and len(registered["client_secret"]) >= 32
    return registered


def _stored(hub: RunningHub) -> list[str]:
    signin = hub.hub.signin
    assert signin is not None
    with Session(signin.store.engine) as s:
        return [row.document for row in s.exec(select(SignInClientRow))]


async def _token(
    http: httpx2.AsyncClient, hub: RunningHub, client: dict[str, Any], secret: str, form: dict[str, str]
) -> httpx2.Response:
    """A token request authenticated as the client registered (in the body, or by HTTP Basic)."""
    form = {**form, "client_id": client["client_id"]}
    headers: dict[str, str] = {}
    if client["token_endpoint_auth_method"] == "client_secret_post":
        form["client_secret"] = secret
    else:
        pair = f"{client['client_id']}:{secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return await http.post(hub.url("/signin/token"), data=form, headers=headers)


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_a_confidential_client_signs_in_with_a_secret_the_hub_stores_only_hashed(
    tmp_path: Path, method: str
) -> None:
    async with signin_hub(tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
        client = await _register(http, hub, method)
        secret = client["client_secret"]
        documents = _stored(hub)
        assert len(documents) == 1 and secret not in documents[0]

        verifier, challenge = pkce()
        landed = await sign_in(hub, client["client_id"], challenge)
        code = {"grant_type": "authorization_code", "code": landed["code"], "code_verifier": verifier,
                "redirect_uri": CLIENT_REDIRECT}  # fmt: skip
        wrong = await _token(http, hub, client, secret[:-1] + ("0" if secret[-1] != "0" else "1"), code)
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        assert "client_secret" in wrong.json()["error_description"]
        missing = await _token(http, hub, {**client, "token_endpoint_auth_method": "client_secret_post"}, "", code)
        assert missing.status_code == 401 and missing.json()["error"] == "invalid_client"

        tokens = await _token(http, hub, client, secret, code)
        assert tokens.status_code == 200, tokens.text
        assert (await open_session(http, hub.url("/mcp"), tokens.json()["access_token"])).status_code == 200

        refresh = {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]}
        assert (await _token(http, hub, client, "not-the-secret", refresh)).status_code == 401
        refreshed = await _token(http, hub, client, secret, refresh)
        assert refreshed.status_code == 200, refreshed.text

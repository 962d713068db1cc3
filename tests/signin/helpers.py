"""A hub with `[sign_in]` and the real OpenID provider, and a browser that logs people in by following
redirects (the provider's login page is one POST, as in the admin login tests)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from tests.admin.helpers import hub_on_port
from tests.hub.harness import RunningHub, base_config, fixture_stdio
from tests.tools import NodeToolsMissing, ServedProcess, free_port, node_tools, served
from tests.tools.node import INSTALL_HINT
from tests.tools.requirements import unavailable

IDP_SCRIPT = Path(__file__).parents[1] / "admin" / "oidc_provider.mjs"
IDP_CLIENT_ID = "agenthub-signin"
IDP_CLIENT_SECRET = "client-secret-for-the-sign-in-tests-0123456789"
CLIENT_REDIRECT = "http://127.0.0.1:33418/callback"
"""Where the MCP client's redirect would land (nothing listens: the browser stops at the redirect)."""
VIRTUAL_KEY = "ahk-signin-side-by-side-key-000000000000000000"


def signin_config(hub_port: int, idp: ServedProcess, **overrides: Any) -> dict[str, Any]:
    """A hub with the fixture server, one virtual key, a team, and `[sign_in]` with two grants: `platform-devs`
    reach `fixture__echo` under team `platform` with a budget each; `marketing` reach `fixture__add` only."""
    config = base_config(
        {"fixture": fixture_stdio()},
        keys=[{"name": "ci", "secret": VIRTUAL_KEY, "tools": ["*"]}],
        insecure_loopback=True,
    )
    config["teams"] = [{"name": "platform"}]
    config["sign_in"] = {
        "issuer": f"http://127.0.0.1:{hub_port}",
        "idp": {
            "issuer": idp.base_url,
            "client_id": IDP_CLIENT_ID,
            "client_secret": "env:AGENTHUB_TEST_IDP_SECRET",
            "scopes": ["openid", "email", "groups"],
        },
        "allowed_redirects": ["http://127.0.0.1/*"],
        "grants": [
            {"group": "platform-devs", "tools": ["fixture__echo"], "team": "platform",
             "budget": {"max_usd": 20.0, "reset": "1M"}},
            {"group": "marketing", "tools": ["fixture__add"]},
        ],
        **overrides,
    }  # fmt: skip
    return config


@contextlib.asynccontextmanager
async def identity_provider(hub_port: int) -> AsyncGenerator[ServedProcess]:
    """The IdP (the real `oidc-provider`) with the hub on `hub_port` registered as its client, and the hub's
    client secret in the environment."""
    try:
        tools = node_tools()
    except NodeToolsMissing as exc:
        unavailable(f"the Node tools ({exc})", INSTALL_HINT)
    package = tools.root / "node_modules" / "oidc-provider"
    if not (package / "package.json").is_file():
        unavailable("oidc-provider", INSTALL_HINT)
    redirect = f"http://127.0.0.1:{hub_port}/signin/callback"
    argv = [str(tools.node22), str(IDP_SCRIPT), "{port}", IDP_CLIENT_ID, IDP_CLIENT_SECRET, redirect, str(package)]
    async with served(argv, env=tools.env()) as idp:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AGENTHUB_TEST_IDP_SECRET", IDP_CLIENT_SECRET)
            yield idp


@contextlib.asynccontextmanager
async def signin_hub(
    tmp_path: Path, *, extra: dict[str, Any] | None = None, **overrides: Any
) -> AsyncGenerator[RunningHub]:
    """A hub with `[sign_in]` (`overrides` change the section, `extra` adds top-level tables) in front of the
    IdP."""
    hub_port = free_port()
    async with identity_provider(hub_port) as idp:
        config = {**signin_config(hub_port, idp, **overrides), **(extra or {})}
        async with hub_on_port(config, tmp_path, hub_port) as hub:
            yield hub


@dataclass
class Browser:
    """Plays the person at the browser: follows the authorization URL through the hub and the IdP, logs in as
    `user`, answers the hub's consent page with `decision` (keeping each page it was shown), and stops at the
    redirect back to the MCP client (whose parameters it keeps). With `decision` "hold" it stops at the consent
    page; with `http`, it browses with that client (its cookies stay for the test)."""

    user: str
    decision: str = "approve"
    landed: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    consents: list[httpx2.Response] = field(default_factory=list[httpx2.Response])
    http: httpx2.AsyncClient | None = None
    redirect: str = CLIENT_REDIRECT
    """Where the MCP client's redirect lands; with `deliver`, the browser goes there (a client listening)."""
    deliver: bool = False

    async def visit(self, url: str) -> None:
        if self.http is not None:
            await self._visit(self.http, url)
            return
        async with httpx2.AsyncClient(timeout=20) as browser:
            await self._visit(browser, url)

    async def _visit(self, browser: httpx2.AsyncClient, url: str) -> None:
        response = await browser.get(url)
        for _ in range(20):
            if response.status_code == 200 and response.url.path == "/signin/callback":
                self.consents.append(response)
                if self.decision == "hold":
                    return
                csrf = consent_csrf(response.text)
                response = await browser.post(
                    str(response.url.copy_with(path="/signin/consent", query=None)),
                    data={"csrf": csrf, "decision": self.decision},
                )
                continue
            assert response.status_code in (302, 303), response.text
            location = str(response.next_request.url) if response.next_request else response.headers["location"]
            if location.startswith(self.redirect):
                query = parse_qs(urlsplit(location).query)
                self.landed.append({k: v[0] for k, v in query.items()})
                if self.deliver:
                    delivered = await browser.get(location)
                    assert delivered.status_code < 400, delivered.text
                return
            if "/interaction/" in location and not location.endswith("/login"):
                await browser.get(location)
                response = await browser.post(location + "/login", data={"user": self.user})
            else:
                response = await browser.get(location)
        pytest.fail("the browser never came back to the MCP client")

    async def callback(self) -> AuthorizationCodeResult:
        params = self.landed[-1]
        if "code" not in params:
            raise AssertionError(f"the authorization was refused: {params}")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


def consent_csrf(page: str) -> str:
    """The CSRF token of a consent page's form."""
    found = re.search(r"name=csrf value='([0-9a-f]+)'", page)
    assert found is not None, page
    return found.group(1)


class MemoryTokens:
    """The MCP client's token storage, kept in memory (the test reads what it holds)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def oauth_client(
    url: str, browser: Browser, storage: MemoryTokens, *, client_metadata_url: str | None = None
) -> OAuthClientProvider:
    """The `mcp` SDK's OAuth client for `url`, with `browser` as the person."""
    metadata = OAuthClientMetadata(
        redirect_uris=[AnyUrl(CLIENT_REDIRECT)],
        client_name="sign-in tests",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.visit,
        callback_handler=browser.callback,
        client_metadata_url=client_metadata_url,
    )

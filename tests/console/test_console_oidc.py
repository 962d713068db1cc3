"""Signing in to the console with the admin OIDC login, against a real OpenID provider (`oidc-provider` on Node)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from tests.admin.helpers import admin_client, hub_on_port
from tests.hub.harness import base_config
from tests.tools import NodeToolsMissing, free_port, node_tools, served
from tests.tools.node import INSTALL_HINT
from tests.tools.requirements import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCRIPT = Path(__file__).parents[1] / "admin" / "oidc_provider.mjs"
CLIENT_ID = "agenthub-admin"
CLIENT_SECRET = "client-secret-for-the-console-tests-0123456789"


async def _through_provider(browser: httpx2.AsyncClient, start: httpx2.Response, callback: str, user: str) -> str:
    """Follow the provider's pages as `user` until it redirects to `callback`; returns that URL."""
    response = await browser.get(start.headers["location"])
    for _ in range(10):
        assert response.status_code in (302, 303), response.text
        location = str(response.next_request.url) if response.next_request else response.headers["location"]
        if location.startswith(callback):
            return location
        if "/interaction/" in location and not location.endswith("/login"):
            await browser.get(location)
            response = await browser.post(location + "/login", data={"user": user})
        else:
            response = await browser.get(location)
    pytest.fail("the provider never redirected back to the console")


async def test_single_sign_on_opens_a_console_session_with_the_mapped_role(tmp_path: Path) -> None:
    try:
        tools = node_tools()
    except NodeToolsMissing as exc:
        unavailable(f"the Node tools ({exc})", INSTALL_HINT)
    package = tools.root / "node_modules" / "oidc-provider"
    if not (package / "package.json").is_file():
        unavailable("oidc-provider", INSTALL_HINT)
    hub_port = free_port()
    callback = f"http://127.0.0.1:{hub_port}/ui/signin/callback"
    argv = [str(tools.node22), str(SCRIPT), "{port}", CLIENT_ID, CLIENT_SECRET, callback, str(package)]
    async with served(argv, env=tools.env()) as idp:
        config = base_config({}, keys=[])
        config["admin"] = {
            "oidc": {
                "issuer": idp.base_url, "client_id": CLIENT_ID, "client_secret": "env:AGENTHUB_TEST_OIDC_SECRET",
                "redirect_uri": callback, "scopes": ["openid", "email", "groups"],
                "roles": {"hub-admins": ["admin"], "platform-devs": ["developer"]},
            }
        }  # fmt: skip
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AGENTHUB_TEST_OIDC_SECRET", CLIENT_SECRET)
            async with hub_on_port(config, tmp_path, hub_port) as hub:
                async with httpx2.AsyncClient(base_url=hub.base, timeout=20) as browser:
                    form = await browser.get("/ui/signin")
                    assert 'href="/ui/signin/oidc"' in form.text
                    start = await browser.get("/ui/signin/oidc")
                    assert start.status_code == 303
                    assert urlsplit(start.headers["location"]).netloc == urlsplit(idp.base_url).netloc
                    back = await _through_provider(browser, start, callback, "dana")
                    done = await browser.get(back)
                    assert done.status_code == 303 and done.headers["location"] == "/ui/", done.text
                    assert "agenthub_console" in browser.cookies
                    assert "ahs-" not in str(done.headers) and "ahs-" not in back
                    keys = await browser.get("/ui/keys", follow_redirects=False)
                    assert keys.status_code == 200 and "dana@example.com (developer)" in keys.text
                    replay = await browser.get(back, follow_redirects=False)  # the code is spent: refused
                    assert replay.status_code in (400, 403)
                async with admin_client(hub.base) as api:
                    entries = (await api.get("/api/v1/audit")).json()["data"]
                logins = [e for e in entries if e["action"] == "auth.login" and e["outcome"] == "success"]
                assert [e["actor"] for e in logins] == ["oidc:dana@example.com"]

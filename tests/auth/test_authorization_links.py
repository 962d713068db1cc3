"""Per-user authorization links through the running hub: the link a key's client receives is bound to the person
who opens it first, and nobody completes it without seeing what they authorize.

Each person is a `Browser` with its own cookie jar; the authorization server is the real one of
`tests/auth/servers.py`, which approves at once as the browser's user.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from connectors.auth import SHARED_SUBJECT
from hub.cli.main import main as cli
from hub.upstream_auth.flows import digest
from hub.upstream_auth.manager import HubAuth
from tests.auth.browser import Browser, FormReader
from tests.auth.test_hub_wiring import (
    ADMIN_TOKEN,
    CAROL,
    HUB_CLIENT_SECRET,
    KEYS,
    MASTER_KEY,
    Stack,
    per_user,
    stack,
)
from tests.hub.harness import ALICE, BOB, RunningHub, base_config, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("TEST_TICKETS_SECRET", HUB_CLIENT_SECRET)
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN_TOKEN)


@contextlib.asynccontextmanager
async def per_user_hub(tmp_path: Path, **extra: Any) -> AsyncGenerator[tuple[Stack, RunningHub]]:
    """A hub with one per-user server whose catalog identity an admin has authorized."""
    async with stack() as s:
        config = base_config({"tickets": per_user(s)}, KEYS, insecure_loopback=True, upstream_start_timeout_s=0.5)
        async with running_hub({**config, **extra}, tmp_path) as hub:
            with anyio.fail_after(PATIENCE):
                async with httpx2.AsyncClient(timeout=20) as admin:
                    started = await admin.post(
                        hub.url("/api/v1/servers/tickets/auth/login"),
                        json={},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    )
                assert started.status_code == 200, started.text
                async with Browser("catalog-admin") as browser:
                    assert (await browser.authorize(started.json()["url"])).status_code == 200
                assert await hub.hub.registry.upstreams["tickets"].wait_ready(PATIENCE)
            yield s, hub


async def elicitation_url(hub: RunningHub, key: str) -> str:
    """The URL a key's MCP client receives when it calls the per-user server before authorizing."""
    async with mcp_client(hub.url(), key) as client:
        with pytest.raises(MCPError) as needed:
            await client.call_tool("tickets__whoami", {})
    assert needed.value.error.code == -32042
    data: Any = needed.value.error.data
    return str(data["elicitations"][0]["url"])


def hub_auth(hub: RunningHub) -> HubAuth:
    auth = hub.hub.auth
    assert auth is not None
    return auth


def key_id(hub: RunningHub, name: str) -> str:
    row = hub.hub.store.get_key(name)
    assert row is not None
    return row.id


def assert_guarded(response: httpx2.Response, form_action: str = "'none'") -> None:
    """The headers of every page and redirect of the OAuth endpoints."""
    assert response.headers["content-security-policy"] == (
        f"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def whoami(hub: RunningHub, key: str) -> str:
    async with mcp_client(hub.url(), key) as client:
        result = await client.call_tool("tickets__whoami", {})
    assert not result.is_error, result
    block = result.content[0]
    assert block.type == "text"
    return block.text


async def test_a_link_another_browser_opens_never_binds_that_persons_account(tmp_path: Path) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        with anyio.fail_after(PATIENCE):
            url = await elicitation_url(hub, ALICE)
            async with Browser("alice-user") as alice, Browser("colleague") as colleague:
                back = await alice.until(url, hub.url("/oauth/callback"))  # approved, on her way back to the hub
                leaked = await colleague.authorize(url)  # the same link, forwarded to a colleague
                assert leaked.status_code == 400 and "used" in leaked.text, leaked.text
                assert (await alice.open(back)).status_code == 200
            assert await whoami(hub, ALICE) == "alice-user"
        assert s.provider.grants["authorization_code"] == 2, "the catalog's and alice's: none for the colleague"


async def test_the_person_who_opened_the_link_authorizes_their_own_key(tmp_path: Path) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        with anyio.fail_after(PATIENCE):
            url = await elicitation_url(hub, ALICE)
            assert url.startswith(hub.url("/oauth/start?flow="))
            assert len(httpx2.URL(url).params) == 1, "nothing but the one-time flow id in the link"
            async with Browser("link-preview") as preview:
                assert (await preview.http.head(url)).status_code == 200, "a HEAD request claims nothing"
            async with Browser("alice-user") as alice:
                page = await alice.open(url)
                assert page.status_code == 200, page.text
                assert_guarded(page, "'self' https: http:")
                cookie = page.headers["set-cookie"].lower()
                assert cookie.startswith("agenthub-oauth=")
                assert all(a in cookie for a in ("httponly", "samesite=lax", "path=/", "max-age=600"))
                assert "secure" not in cookie, "a plain-http hub (development) cannot set a secure cookie"
                assert (await alice.open(url)).status_code == 200, "the browser that claimed it may open it again"

                moved = await alice.submit(page)
                assert moved.status_code == 303
                assert moved.headers["location"].startswith(f"{s.issuer}/authorize?")
                assert_guarded(moved)
                done = await alice.follow(moved)
                assert done.status_code == 200 and "You can close this tab" in done.text
                assert_guarded(done)
                assert (await alice.open(url)).status_code == 400, "a link is used once"
            assert await whoami(hub, ALICE) == "alice-user"


async def test_a_link_another_browser_opened_first_is_refused(tmp_path: Path) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        with anyio.fail_after(PATIENCE):
            url = await elicitation_url(hub, ALICE)
            async with Browser("alice-user") as alice, Browser("colleague") as colleague:
                page = await alice.open(url)
                assert page.status_code == 200

                refused = await colleague.open(url)
                assert refused.status_code == 403 and "another browser" in refused.text
                assert not FormReader(refused.text).found and "set-cookie" not in refused.headers
                assert_guarded(refused)
                # Alice's form, copied to the colleague's browser: first without a cookie of its own, then with
                # the cookie of a link the colleague claimed (bob's).
                assert (await colleague.submit(page)).status_code == 403
                assert (await colleague.open(await elicitation_url(hub, BOB))).status_code == 200
                assert (await colleague.submit(page)).status_code == 403

                done = await alice.follow(await alice.submit(page))
                assert done.status_code == 200, done.text
            assert await whoami(hub, ALICE) == "alice-user"
        assert s.provider.grants["authorization_code"] == 2, "the catalog's and alice's"


async def test_a_callback_without_the_claiming_cookie_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        auth = hub_auth(hub)
        with anyio.fail_after(PATIENCE):
            async with (
                Browser("alice-user") as alice,
                Browser("colleague") as colleague,
                Browser("other-colleague") as other,
            ):
                assert (await other.open(await elicitation_url(hub, BOB))).status_code == 200  # a cookie of its own
                for stranger in (colleague, other):
                    url = await elicitation_url(hub, ALICE)
                    upstream = str(await alice.until(url, f"{s.issuer}/authorize"))  # alice confirmed on the hub
                    # The upstream's authorization URL leaks (a shared screen, a pasted link); someone approves it.
                    refused = await stranger.authorize(upstream)
                    assert refused.status_code == 403 and "another browser" in refused.text
                    assert_guarded(refused)
                    assert await auth.auths.store.load("tickets", key_id(hub, "alice")) is None
                    # A refused callback uses the authorization up: alice asks her client for a new link.
                    late = await alice.authorize(upstream)
                    assert late.status_code == 400 and "used" in late.text
            assert await elicitation_url(hub, ALICE), "alice's key still has to authorize"
        assert s.provider.grants["authorization_code"] == 1, "only the catalog's code was ever redeemed"


async def test_the_confirmation_form_needs_its_token(tmp_path: Path) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        with anyio.fail_after(PATIENCE):
            url, other = await elicitation_url(hub, ALICE), await elicitation_url(hub, ALICE)
            async with Browser("alice-user") as alice:
                page = await alice.open(url)
                other_token = FormReader((await alice.open(other)).text).fields["csrf"]
                for token in (None, "", "0" * 64, other_token):
                    forged = await alice.submit(page, csrf=token)
                    assert forged.status_code == 403 and "did not come from this authorization page" in forged.text
                mismatched = await alice.submit(page, flow=httpx2.URL(other).params["flow"])
                assert mismatched.status_code == 403, "a token is good for its own link only"
                plain = await alice.http.post(url, content=b"{}", headers={"Content-Type": "application/json"})
                assert plain.status_code == 400
                moved = await alice.submit(page)
                assert moved.status_code == 303, "the link survived the forged attempts"
                assert (await alice.follow(moved)).status_code == 200
            assert await whoami(hub, ALICE) == "alice-user"
        assert s.provider.grants["authorization_code"] == 2


TEAM = "<script>alert('x')</script> & \"R&D\""


async def test_the_confirmation_page_names_the_key_its_team_the_server_and_the_hub_escaped(tmp_path: Path) -> None:
    keys = [{**KEYS[0], "team": TEAM}, *KEYS[1:]]
    async with per_user_hub(tmp_path, keys=keys, teams=[{"name": TEAM}]) as (s, hub):
        with anyio.fail_after(PATIENCE):
            url = await elicitation_url(hub, ALICE)
            async with Browser("alice-user") as alice:
                page = await alice.open(url)
            assert page.status_code == 200, page.text
            form = FormReader(page.text)
            assert form.button == "Continue to tickets" and set(form.fields) == {"flow", "csrf"}
            assert form.action is None, "the form posts back to the hub's own page"
            text = page.text
            for shown in ("alice", TEAM, "tickets", s.upstream_url, hub.base):
                assert html.escape(shown) in text, shown
            assert "<script>" not in text and "R&D" not in text
            assert "AgentHub key" in text and "Team" in text and "Requesting hub" in text
            assert "If someone sent you this link, close this page" in text


async def test_an_administrators_authorization_never_completes_a_keys_and_a_link_never_the_hubs(
    tmp_path: Path,
) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        auth = hub_auth(hub)
        alice_id = key_id(hub, "alice")
        with anyio.fail_after(PATIENCE):
            async with Browser("alice-user") as alice:
                unbound = await auth.auths.start_authorization("tickets", alice_id)
                refused = await alice.authorize(unbound)
                assert refused.status_code == 403 and "not started from an AgentHub authorization link" in refused.text

                assert (await alice.open(await auth.links.offer("tickets", alice_id))).status_code == 200
                cookie = alice.http.cookies["agenthub-oauth"]
                bound = await auth.auths.start_authorization("tickets", SHARED_SUBJECT, binding=digest(cookie))
                refused = await alice.authorize(bound)
                assert refused.status_code == 403
                assert html.escape("cannot authorize the hub's own identity") in refused.text
            assert await auth.auths.store.load("tickets", alice_id) is None
            assert hub.hub.registry.upstreams["tickets"].ready
        assert s.provider.grants["authorization_code"] == 1, "only the catalog's code was ever redeemed"


async def test_an_administrator_gets_a_link_for_a_key_from_the_api_or_from_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with per_user_hub(tmp_path) as (s, hub):
        cfg = tmp_path / "agenthub.toml"
        cfg.write_text(
            f'[hub]\nlisten = "127.0.0.1:{hub.port}"\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n'
            f"insecure_loopback = true\n[servers.tickets]\n"
            f'transport = "http"\nurl = "{s.upstream_url}"\n'
            'auth = { type = "oauth2", grant = "authorization_code", per_user = true }\n'
        )
        with anyio.fail_after(PATIENCE):
            async with httpx2.AsyncClient(timeout=20) as admin:
                started = await admin.post(
                    hub.url("/api/v1/servers/tickets/auth/login"),
                    json={"subject": "bob"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
            assert started.status_code == 200, started.text
            assert started.json()["url"].startswith(hub.url("/oauth/start?flow="))
            # The CLI without an admin token writes the link to the database; the running hub serves it.
            monkeypatch.delenv("AGENTHUB_ADMIN_TOKEN")
            login = ["auth", "login", "tickets", "--subject", "carol", "--config", str(cfg)]
            assert await anyio.to_thread.run_sync(cli, login) == 0
            printed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("http"))
            assert printed.startswith(hub.url("/oauth/start?flow="))
            async with Browser("bob-user") as bob, Browser("carol-user") as carol:
                assert (await bob.authorize(started.json()["url"])).status_code == 200
                assert (await carol.authorize(printed)).status_code == 200
            assert await whoami(hub, BOB) == "bob-user"
            assert await whoami(hub, CAROL) == "carol-user"

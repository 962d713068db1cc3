"""Authorization code with PKCE, per user: two users authorize in a (scripted) browser and keep apart."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from connectors.auth import (
    AuthorizationRequired,
    InvalidAuthorizationState,
    IssuerMismatch,
    MemoryTokenStore,
    OAuth2Auth,
    UpstreamAuths,
    callback_params,
)
from tests.auth.conftest import upstream_client, whoami
from tests.auth.servers import REDIRECT, oauth_stack
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

PER_USER = OAuth2Auth(type="oauth2", grant="authorization_code", per_user=True)


class Clock:
    """Wall time plus an offset the test moves forward (the upstream keeps real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


async def browser_authorize(url: str, user: str) -> tuple[str, str, str | None]:
    """Open the authorization URL as `user` (the server auto-approves) and read the callback parameters."""
    async with httpx2.AsyncClient(follow_redirects=False) as browser:
        resp = await browser.get(url, headers={"X-Test-User": user})
    assert resp.status_code == 302, resp.text
    location = httpx2.URL(resp.headers["location"])
    assert str(location.copy_with(query=None)) == REDIRECT
    return callback_params(dict(location.params))


def make_auths(upstream_url: str, clock: Clock | None = None) -> UpstreamAuths:
    auths = UpstreamAuths(MemoryTokenStore(), clock=clock or Clock())
    auths.add("tickets", upstream_url, PER_USER, redirect_uri=REDIRECT, insecure_loopback=True)
    return auths


async def test_two_users_authorize_separately_and_only_see_their_own_identity() -> None:
    async with oauth_stack() as stack:
        auths = make_auths(stack.upstream_url)
        auth = auths.get("tickets")
        assert auth is not None
        with anyio.fail_after(PATIENCE):
            with pytest.raises(AuthorizationRequired) as needed:
                await auth.ensure_authorized("alice")
            assert needed.value.subject == "alice"
            url = httpx2.URL(needed.value.url)
            assert url.params["code_challenge_method"] == "S256"
            assert url.params["resource"] == stack.upstream_url
            assert "code_verifier" not in url.params
            server, subject, _tokens = await auths.complete_authorization(
                *await browser_authorize(needed.value.url, "alice")
            )
            assert (server, subject) == ("tickets", "alice")
            bob_url = await auths.start_authorization("tickets", "bob")
            await auths.complete_authorization(*await browser_authorize(bob_url, "bob"))

            async with (
                upstream_client(auths, "tickets", stack.upstream_url, "alice") as alice,
                upstream_client(auths, "tickets", stack.upstream_url, "bob") as bob,
            ):
                assert await whoami(alice) == "alice"
                assert await whoami(bob) == "bob"
                assert await whoami(alice) == "alice"
            with pytest.raises(AuthorizationRequired):
                await auth.ensure_authorized("carol")
        assert stack.provider.registrations == 1, "one dynamic registration serves every user"
        assert stack.provider.grants["authorization_code"] == 2
        await auths.aclose()


async def test_a_state_is_single_use_and_expires() -> None:
    async with oauth_stack() as stack:
        clock = Clock()
        auths = make_auths(stack.upstream_url, clock)
        with anyio.fail_after(PATIENCE):
            params = await browser_authorize(await auths.start_authorization("tickets", "alice"), "alice")
            await auths.complete_authorization(*params)
            with pytest.raises(InvalidAuthorizationState):
                await auths.complete_authorization(*params)
            late = await browser_authorize(await auths.start_authorization("tickets", "alice"), "alice")
            clock.offset = 601
            with pytest.raises(InvalidAuthorizationState):
                await auths.complete_authorization(*late)
        await auths.aclose()


async def test_a_bound_authorization_completes_only_with_its_binding() -> None:
    async with oauth_stack() as stack:
        auths = make_auths(stack.upstream_url)
        with anyio.fail_after(PATIENCE):
            url = await auths.start_authorization("tickets", "alice", binding="browser-one")
            params = await browser_authorize(url, "alice")
            with pytest.raises(InvalidAuthorizationState, match="started elsewhere"):
                await auths.complete_authorization(*params, binding="browser-two")
            with pytest.raises(InvalidAuthorizationState, match="unknown, used or expired"):
                await auths.complete_authorization(*params, binding="browser-one")
            assert await auths.store.load("tickets", "alice") is None
            url = await auths.start_authorization("tickets", "alice", binding="browser-one")
            server, subject, _tokens = await auths.complete_authorization(
                *await browser_authorize(url, "alice"), binding="browser-one"
            )
            assert (server, subject) == ("tickets", "alice")
        assert stack.provider.grants["authorization_code"] == 1, "the refused code was never redeemed"
        await auths.aclose()


async def test_an_authorization_response_from_another_issuer_is_refused() -> None:
    async with oauth_stack() as stack:
        auths = make_auths(stack.upstream_url)
        stack.provider.iss_override = "https://evil.example"
        with anyio.fail_after(PATIENCE):
            params = await browser_authorize(await auths.start_authorization("tickets", "alice"), "alice")
            with pytest.raises(IssuerMismatch):
                await auths.complete_authorization(*params)
        assert stack.provider.grants["authorization_code"] == 0, "the code was never redeemed"
        await auths.aclose()


async def test_refresh_tokens_rotate_and_each_is_used_once() -> None:
    async with oauth_stack() as stack:
        clock = Clock()
        auths = make_auths(stack.upstream_url, clock)
        auth = auths.get("tickets")
        assert auth is not None
        with anyio.fail_after(PATIENCE):
            await auths.complete_authorization(
                *await browser_authorize(await auths.start_authorization("tickets", "alice"), "alice")
            )
            first = await auths.store.load("tickets", "alice")
            assert first is not None and first.tokens.refresh_token is not None
            async with upstream_client(auths, "tickets", stack.upstream_url, "alice") as client:
                for round_ in (1, 2):
                    clock.offset += 3600
                    assert await whoami(client) == "alice"
                    assert stack.provider.grants["refresh_token"] == round_
            latest = await auths.store.load("tickets", "alice")
            assert latest is not None and latest.tokens.refresh_token is not None
            assert latest.tokens.refresh_token != first.tokens.refresh_token
            assert first.tokens.refresh_token not in stack.provider.refresh, "the server rotated the old one out"
            assert latest.tokens.refresh_token in stack.provider.refresh
        await auths.aclose()


async def test_a_revoked_refresh_token_asks_for_authorization_once_and_never_loops() -> None:
    async with oauth_stack() as stack:
        auths = make_auths(stack.upstream_url)
        auth = auths.get("tickets")
        assert auth is not None
        with anyio.fail_after(PATIENCE):
            await auths.complete_authorization(
                *await browser_authorize(await auths.start_authorization("tickets", "alice"), "alice")
            )
            async with upstream_client(auths, "tickets", stack.upstream_url, "alice") as client:
                assert await whoami(client) == "alice"
                stack.provider.revoke_access_tokens()
                stack.provider.revoke_refresh_tokens()
                for _ in range(3):
                    with pytest.raises(MCPError):
                        await whoami(client)
            assert stack.provider.requests["refresh_token"] == 1, "one refresh attempt, then no more"
            assert stack.provider.grants["refresh_token"] == 0
            error = auth.last_error("alice")
            assert isinstance(error, AuthorizationRequired)
            assert error.url.startswith(stack.issuer + "/authorize?")
            with pytest.raises(AuthorizationRequired) as needed:
                await auth.ensure_authorized("alice")
            await auths.complete_authorization(*await browser_authorize(needed.value.url, "alice"))
            async with upstream_client(auths, "tickets", stack.upstream_url, "alice") as client:
                assert await whoami(client) == "alice"
        await auths.aclose()

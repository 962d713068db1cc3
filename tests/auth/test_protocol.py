"""Protocol details: challenge parsing, well-known URL orders, PKCE, non-rotating servers, secrets in reprs."""

from __future__ import annotations

import base64
import hashlib

import anyio
import pytest

from connectors.auth import MemoryTokenStore, OAuth2Auth, TokenSet, UpstreamAuths
from connectors.auth.discovery import authorization_server_urls, parse_bearer_challenge, protected_resource_urls
from connectors.auth.oauth import ClientIdentity, new_pkce
from tests.auth.conftest import upstream_client, whoami
from tests.auth.servers import HUB_CLIENT_ID, HUB_CLIENT_SECRET, REDIRECT, oauth_stack
from tests.auth.test_authorization_code import Clock, browser_authorize
from tests.tools.patience import PATIENCE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("Basic realm=x", {}),
        ('Bearer resource_metadata="https://a/b", scope="x y"', {"resource_metadata": "https://a/b", "scope": "x y"}),
        ("bearer error=invalid_token", {"error": "invalid_token"}),
        ('Bearer error="a \\"quoted\\" word"', {"error": 'a "quoted" word'}),
        ("Bearer", {}),
    ],
)
def test_bearer_challenges_are_parsed(header: str | None, expected: dict[str, str]) -> None:
    assert parse_bearer_challenge(header) == expected


def test_well_known_urls_come_in_the_specified_order() -> None:
    assert protected_resource_urls("https://t.example/api/mcp", "https://t.example/prm") == [
        "https://t.example/prm",
        "https://t.example/.well-known/oauth-protected-resource/api/mcp",
        "https://t.example/.well-known/oauth-protected-resource",
    ]
    assert protected_resource_urls("https://t.example/", None) == [
        "https://t.example/.well-known/oauth-protected-resource"
    ]
    assert authorization_server_urls("https://id.example/tenant1") == [
        "https://id.example/.well-known/oauth-authorization-server/tenant1",
        "https://id.example/.well-known/openid-configuration/tenant1",
        "https://id.example/tenant1/.well-known/openid-configuration",
    ]
    assert authorization_server_urls("https://id.example/") == [
        "https://id.example/.well-known/oauth-authorization-server",
        "https://id.example/.well-known/openid-configuration",
    ]


def test_pkce_uses_s256_over_a_long_random_verifier() -> None:
    verifier, challenge = new_pkce()
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert challenge == digest
    assert new_pkce()[0] != verifier


def test_reprs_never_show_tokens_or_secrets() -> None:
    tokens = TokenSet(access_token="at-visible?", obtained_at=0, refresh_token="rt-visible?")
    client = ClientIdentity("cid", "secret-visible?", "client_secret_basic")
    for text in (repr(tokens), str(tokens), repr(client)):
        assert "visible?" not in text


@pytest.mark.anyio
async def test_a_server_that_does_not_rotate_keeps_the_old_refresh_token_working() -> None:
    async with oauth_stack(rotate=False) as stack:
        clock = Clock()
        auths = UpstreamAuths(MemoryTokenStore(), clock=clock)
        config = OAuth2Auth(
            type="oauth2", grant="authorization_code", client_id=HUB_CLIENT_ID, client_secret=HUB_CLIENT_SECRET
        )
        auths.add("tickets", stack.upstream_url, config, redirect_uri=REDIRECT, insecure_loopback=True)
        with anyio.fail_after(PATIENCE):
            await auths.complete_authorization(
                *await browser_authorize(await auths.start_authorization("tickets", None), "admin")
            )
            first = await auths.store.load("tickets", "-")
            assert first is not None
            async with upstream_client(auths, "tickets", stack.upstream_url) as client:
                for _ in range(2):
                    clock.offset += 3600
                    assert await whoami(client) == "admin"
            latest = await auths.store.load("tickets", "-")
            assert latest is not None and latest.tokens.refresh_token == first.tokens.refresh_token
            assert stack.provider.grants["refresh_token"] == 2
        await auths.aclose()

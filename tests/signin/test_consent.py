"""The consent page between the identity provider and the MCP client: it names the client, its redirect URI and the
tools the person's grants reach now; Approve / Deny are bound to the browser that started the flow; a consent is
remembered per person and client until the grants change; each sign-in is an audit entry."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.admin.helpers import hub_on_port
from tests.hub.harness import RunningHub
from tests.signin.helpers import CLIENT_REDIRECT, Browser, consent_csrf, identity_provider, signin_config
from tests.signin.test_sign_in_refusals import authorize_url, pkce, redeem, register
from tests.tools import free_port
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _signins(hub: RunningHub) -> list[tuple[str, str, str | None, str, Any]]:
    control = hub.hub.control
    assert control is not None
    entries = control.audit.entries()
    return [(e.actor, e.action, e.resource_id, e.outcome, e.after) for e in entries if e.action == "signin.login"]


async def test_the_consent_page_names_client_redirect_and_tools_and_is_remembered_until_grants_change(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with identity_provider(port) as idp, httpx2.AsyncClient(timeout=PATIENCE) as http:
        async with hub_on_port(signin_config(port, idp), tmp_path, port) as hub:
            client_id = (await register(http, hub)).json()["client_id"]
            dana = Browser("dana")
            verifier, challenge = pkce()
            await dana.visit(authorize_url(hub, client_id, challenge))
            assert len(dana.consents) == 1
            page = dana.consents[0]
            assert page.headers["content-type"].startswith("text/html")
            text = page.text
            assert "refusals" in text and CLIENT_REDIRECT in text and "dana@example.com" in text
            assert "fixture__echo" in text and "fixture__add" not in text  # the grant over the live registry
            policy = page.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
            assert "form-action 'self' http://127.0.0.1:33418" in policy and "script-src" not in policy
            assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
            cookies = [c for c in page.headers.get_list("set-cookie") if c.startswith("agenthub_signin_consent=")]
            consent = SimpleCookie(cookies[0])["agenthub_signin_consent"]
            assert consent["httponly"] and consent["samesite"].lower() == "strict" and consent["path"] == "/signin"
            assert consent.value not in str(page.url)  # nothing secret in the page's address
            landed = dana.landed[-1]
            assert (await redeem(http, hub, client_id, landed["code"], verifier)).status_code == 200

            # the same person and client again: no page, straight back with a code
            await dana.visit(authorize_url(hub, client_id, pkce()[1]))
            assert len(dana.consents) == 1 and "code" in dana.landed[-1]
            # another person with the same client is asked
            eve = Browser("eve")
            await eve.visit(authorize_url(hub, client_id, pkce()[1]))
            assert len(eve.consents) == 1 and "fixture__add" in eve.consents[0].text

            details = [(actor, outcome, after["detail"]) for actor, _a, _id, outcome, after in _signins(hub)]
            assert details == [
                ("user:dana@example.com", "success", "approved"),
                ("user:dana@example.com", "success", "remembered"),
                ("user:eve@example.com", "success", "approved"),
            ]

        # the grants change (dana now reaches fixture__add as well): she is asked again
        grants = [{"group": "platform-devs", "tools": ["fixture__echo", "fixture__add"], "team": "platform"}]
        async with hub_on_port(signin_config(port, idp, grants=grants), tmp_path, port) as hub:
            again = Browser("dana")
            await again.visit(authorize_url(hub, client_id, pkce()[1]))
            assert len(again.consents) == 1 and "code" in again.landed[-1]
            assert "fixture__add" in again.consents[0].text and "fixture__echo" in again.consents[0].text


async def test_deny_sends_access_denied_back_and_is_audited(tmp_path: Path) -> None:
    port = free_port()
    async with identity_provider(port) as idp, httpx2.AsyncClient(timeout=PATIENCE) as http:
        async with hub_on_port(signin_config(port, idp), tmp_path, port) as hub:
            client_id = (await register(http, hub)).json()["client_id"]
            dana = Browser("dana", decision="deny")
            await dana.visit(authorize_url(hub, client_id, pkce()[1]))
            landed = dana.landed[-1]
            assert landed["error"] == "access_denied" and "code" not in landed
            assert (landed["state"], landed["iss"]) == ("st-1", hub.base)
            assert [(a, o) for a, _x, _i, o, _after in _signins(hub)] == [("user:dana@example.com", "denied")]
            # nothing was remembered: the next sign-in asks again
            asked = Browser("dana")
            await asked.visit(authorize_url(hub, client_id, pkce()[1]))
            assert len(asked.consents) == 1 and "code" in asked.landed[-1]


async def test_a_consent_form_is_refused_without_the_browser_that_started_the_flow(tmp_path: Path) -> None:
    port = free_port()
    async with (
        identity_provider(port) as idp,
        hub_on_port(signin_config(port, idp), tmp_path, port) as hub,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
        httpx2.AsyncClient(timeout=PATIENCE) as victim,
        httpx2.AsyncClient(timeout=PATIENCE) as attacker,
    ):
        client_id = (await register(http, hub)).json()["client_id"]
        held = Browser("dana", decision="hold", http=victim)
        await held.visit(authorize_url(hub, client_id, pkce()[1]))
        csrf = consent_csrf(held.consents[0].text)
        consent_url = hub.url("/signin/consent")

        # another browser (no flow cookie, or its own) posting the victim's form: refused, nothing consumed
        bare = await attacker.post(consent_url, data={"csrf": csrf, "decision": "approve"})
        assert bare.status_code == 403 and "location" not in bare.headers
        other = Browser("eve", decision="hold", http=attacker)
        await other.visit(authorize_url(hub, client_id, pkce()[1]))
        crossed = await attacker.post(consent_url, data={"csrf": csrf, "decision": "approve"})
        assert crossed.status_code == 403
        # the victim's own browser without the token, or with a forged one: refused
        assert (await victim.post(consent_url, data={"decision": "approve"})).status_code == 403
        forged = await victim.post(consent_url, data={"csrf": "0" * 64, "decision": "approve"})
        assert forged.status_code == 403
        assert (await victim.post(consent_url, data={"csrf": csrf, "decision": "maybe"})).status_code == 400

        approved = await victim.post(consent_url, data={"csrf": csrf, "decision": "approve"})
        assert approved.status_code == 302 and approved.headers["location"].startswith(CLIENT_REDIRECT + "?code=")
        # the form answers once (the answer cleared the flow cookie)
        assert (await victim.post(consent_url, data={"csrf": csrf, "decision": "approve"})).status_code == 403

"""The console over plain HTTP against a running hub: every route guarded, sign-in and sign-out, cookie flags,
the Content-Security-Policy, CSRF, RBAC through the admin API (refusals audited), and escaping."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from sqlalchemy import create_engine, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.console.app import console_app
from hub.console.sessions import TABLE, Session, Sessions
from hub.console.web import CSP, set_session_cookie
from hub.settings import settings_from_dict
from tests.admin.conftest import ADMIN
from tests.admin.helpers import admin_client
from tests.console.helpers import browser_like, csrf_of, sign_in
from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = pytest.mark.anyio

SCRIPT = "<script>alert('owned')</script>"


def config() -> dict[str, Any]:
    return base_config({"fixture": fixture_stdio("fixture", "--note", SCRIPT)})


class _NoHub:
    @property
    def hub(self) -> Any:
        raise AssertionError("a request without a session must not reach the hub")


def console_routes(tmp_path: Path) -> list[Route]:
    app: Any = console_app(_NoHub(), settings_from_dict({}, tmp_path / "agenthub.toml"))
    return [r for r in app.app.routes if isinstance(r, Route)]


PUBLIC = {"/ui/signin", "/ui/signin/oidc", "/ui/signin/callback", "/ui/signout", "/ui/static/{name}"}


async def test_every_page_without_a_session_redirects_to_sign_in(tmp_path: Path) -> None:
    routes = console_routes(tmp_path)
    guarded = [r for r in routes if r.path not in PUBLIC]
    assert len(guarded) >= 10
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        for route in guarded:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            for method in sorted(route.methods or ()):
                if method == "HEAD":
                    continue
                answer = await http.request(method, path, data={"csrf": "anything"} if method == "POST" else None)
                assert answer.status_code == 303, (method, path, answer.status_code)
                assert answer.headers["location"] == "/ui/signin", (method, path)
                assert answer.headers["content-security-policy"] == CSP


async def test_sign_in_sets_a_guarded_cookie_and_sign_out_ends_the_session(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        refused = await sign_in(http, "not-the-token")
        assert refused.status_code == 401
        assert "agenthub_console=" not in refused.headers.get("set-cookie", "")
        answer = await sign_in(http)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("agenthub_console="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/ui"} <= flags
        assert "secure" not in flags  # plain HTTP here
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert len(session_id) >= 40 and ADMIN not in cookie
        page = await http.get("/ui/keys")
        assert page.status_code == 200 and "Virtual keys" in page.text
        assert page.headers["content-security-policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "default-src 'self'" in CSP
        assert page.headers["cache-control"] == "no-store"
        assert ADMIN not in page.text and ADMIN not in str(page.url)
        out = await http.post("/ui/signout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
        http.cookies.set("agenthub_console", session_id, domain="127.0.0.1", path="/ui")
        again = await http.get("/ui/keys")
        assert again.status_code == 303 and again.headers["location"] == "/ui/signin"


async def test_the_cookie_is_secure_when_the_request_came_over_tls(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        form = await http.get("/ui/signin")  # over plain HTTP: the form's cookie comes back to this client
        # uvicorn takes the scheme from X-Forwarded-Proto sent by a trusted proxy (127.0.0.1 by default)
        tls = {"x-forwarded-proto": "https"}
        answer = await http.post("/ui/signin", data={"csrf": csrf_of(form.text), "token": ADMIN}, headers=tls)
        assert answer.status_code == 303
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("agenthub_console="))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}


def test_set_session_cookie_marks_tls_requests_secure() -> None:
    session = Session("id-1", "credential", "someone", "csrf", 0.0)
    for scheme, secure in (("https", True), ("http", False)):
        request = Request({"type": "http", "scheme": scheme, "path": "/ui/", "headers": [], "server": ("h", 1)})
        response = Response()
        set_session_cookie(response, request, session)
        assert ("secure" in response.headers["set-cookie"].lower()) is secure


def test_an_idle_session_expires_and_a_used_one_lives_on(tmp_path: Path) -> None:
    now = [1000.0]
    engine = create_engine(f"sqlite:///{tmp_path / 'sessions.db'}")
    sessions = Sessions(engine, b"k" * 32, idle_seconds=60, clock=lambda: now[0])
    kept, idle = sessions.open("a", "alice"), sessions.open("b", "bob")
    assert kept.id != idle.id and kept.csrf != idle.csrf
    now[0] += 50
    assert sessions.get(kept.id) == replace(kept, last_used=now[0])
    now[0] += 50  # kept was used 50 s ago, idle 100 s ago
    assert sessions.get(kept.id) is not None
    assert sessions.get(idle.id) is None
    assert sessions.get("unknown") is None and sessions.get(None) is None
    engine.dispose()


def test_every_process_knows_a_session_and_the_database_holds_no_id_or_credential(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    first_engine, second_engine = create_engine(url), create_engine(url)
    first = Sessions(first_engine, b"k" * 32, idle_seconds=600)
    second = Sessions(second_engine, b"k" * 32, idle_seconds=600)  # another worker, same database
    opened = first.open("aht-the-credential-itself", "carol")
    found = second.get(opened.id)
    assert found is not None and (found.credential, found.subject, found.csrf) == (
        "aht-the-credential-itself",
        "carol",
        opened.csrf,
    )
    dump = "\n".join(sqlite3.connect(tmp_path / "sessions.db").iterdump())
    assert opened.id not in dump and "aht-the-credential-itself" not in dump
    assert Sessions(second_engine, b"x" * 32, idle_seconds=600).get(opened.id) is None  # another audit key
    second.close(opened.id)
    assert first.get(opened.id) is None
    first_engine.dispose()
    second_engine.dispose()


async def test_static_files_are_long_cached_and_htmx_is_vendored(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        form = await http.get("/ui/signin")
        src = re.search(r'src="(/ui/static/htmx\.min\.js\?v=[0-9a-f]+)"', form.text)
        assert src is not None
        js = await http.get(src.group(1))
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "max-age=31536000" in js.headers["cache-control"]
        assert "Zero-Clause BSD" in js.text[:400]
        assert (await http.get("/ui/static/nope.js")).status_code == 404
        assert (await http.get("/ui/static/..%2F..%2Fweb.py")).status_code == 404


async def test_a_form_without_the_session_csrf_token_is_refused(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        await sign_in(http)
        page = await http.get("/ui/keys")
        for data in ({"name": "forged"}, {"name": "forged", "csrf": "wrong-token"}):
            refused = await http.post("/ui/keys", data=data)
            assert refused.status_code == 403 and "CSRF" in refused.text
        async with admin_client(running.base) as api:
            names = [k["name"] for k in (await api.get("/api/v1/keys")).json()["data"]]
        assert "forged" not in names
        made = await http.post("/ui/keys", data={"name": "made", "csrf": csrf_of(page.text), "tools": "fixture__*"})
        assert made.status_code == 201
        secret = re.search(r'<code id="new-secret">([^<]+)</code>', made.text)
        assert secret is not None and secret.group(1).startswith("ahk-")
        # the sign-in form has its own token: a cross-site POST cannot sign a browser in
        stranger = await http.post("/ui/signin", data={"token": ADMIN})
        assert stranger.status_code == 403


async def test_a_key_made_in_the_console_works_until_revoked_there(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        await sign_in(http)
        page = await http.get("/ui/keys")
        made = await http.post(
            "/ui/keys", data={"name": "console-key", "csrf": csrf_of(page.text), "tools": "fixture__echo"}
        )
        found = re.search(r'<code id="new-secret">([^<]+)</code>', made.text)
        assert found is not None
        secret = found.group(1)
        async with mcp_client(running.url(), secret) as client:
            result = await client.call_tool("fixture__echo", {"message": "hi"})
            assert not result.is_error
        async with admin_client(running.base) as api:
            key_id = (await api.get("/api/v1/keys/console-key")).json()["id"]
        detail = await http.get(f"/ui/keys/{key_id}")
        assert detail.status_code == 200 and "fixture__echo" in detail.text  # what this key sees
        revoked = await http.post(f"/ui/keys/{key_id}/revoke", data={"csrf": csrf_of(detail.text)})
        assert revoked.status_code == 303
        with pytest.raises(Exception) as refused:
            async with mcp_client(running.url(), secret) as client:
                await client.call_tool("fixture__echo", {"message": "hi"})
        assert "-32001" in repr(refused.value) and "a valid virtual key is required" in repr(refused.value)
        async with admin_client(running.base) as api:
            entries = (await api.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
        revokes = [e for e in entries if e["action"] == "key.revoke" and e["resource_id"] == key_id]
        assert revokes and revokes[0]["actor"] == "bootstrap"


async def test_a_viewer_sees_no_controls_and_a_forged_change_is_refused_and_audited(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running:
        async with admin_client(running.base) as api:
            created = await api.post("/api/v1/tokens", json={"name": "watcher", "roles": ["viewer"]})
            assert created.status_code == 201, created.text
            viewer = created.json()["secret"]
        async with browser_like(running.base) as http:
            await sign_in(http, viewer)
            page = await http.get("/ui/keys")
            assert page.status_code == 200
            assert "Create a key" not in page.text and 'method="post" action="/ui/keys"' not in page.text
            servers = await http.get("/ui/servers")
            assert "Add a server" not in servers.text
            forged = await http.post("/ui/keys", data={"name": "sneaky", "csrf": csrf_of(page.text)})
            assert forged.status_code == 403
            assert "Not allowed" in forged.text
        async with admin_client(running.base) as api:
            names = [k["name"] for k in (await api.get("/api/v1/keys")).json()["data"]]
            entries = (await api.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
        assert "sneaky" not in names
        denied = [e for e in entries if e["outcome"] == "denied" and e["action"] == "keys.create"]
        assert denied and denied[-1]["actor"] == "token:watcher"


async def test_script_in_a_tool_description_and_a_log_entry_is_shown_as_text(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            failed = await client.call_tool("fixture__fail", {"reason": SCRIPT})
            assert failed.is_error
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with browser_like(running.base) as http:
            await sign_in(http)
            server = await http.get("/ui/servers/fixture")
            logs = await http.get("/ui/logs", params={"tool": "fail"})
            assert logs.status_code == 200
            call_id = re.search(r'href="/ui/logs/([^"]+)"', logs.text)
            assert call_id is not None
            call = await http.get(f"/ui/logs/{call_id.group(1)}")
        escaped = "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"
        assert server.status_code == 200 and SCRIPT not in server.text and escaped in server.text
        assert SCRIPT not in logs.text and SCRIPT not in call.text
        assert call.status_code == 200 and "fixture__fail" in call.text


async def test_the_overview_charts_the_days_calls_and_names_the_upstreams(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            for n in range(3):
                await client.call_tool("fixture__echo", {"message": f"m{n}"})
            assert (await client.call_tool("fixture__fail", {})).is_error
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with browser_like(running.base) as http:
            signed = await sign_in(http)
            assert signed.headers["location"] == "/ui/"
            home = await http.get("/ui/")
            assert home.headers["location"] == "/ui/overview"
            page = await http.get("/ui/overview")
        assert page.status_code == 200
        charts = re.findall(r"<svg class=\"chart (calls|errors)\".*?</svg>", page.text, re.S)
        assert charts == ["calls", "errors"]
        titles = re.findall(r"<title>(\d{4}-\d\d-\d\d): (\d+)</title>", page.text)
        today_calls, today_errors = int(titles[len(titles) // 2 - 1][1]), int(titles[-1][1])
        assert today_errors == 1 and today_calls >= 4
        assert "of the latest" in page.text and "fixture" in page.text and "ready" in page.text


async def test_teams_and_customers_show_usage_against_their_limits(tmp_path: Path) -> None:
    limited = base_config(
        {"fixture": fixture_stdio()},
        keys=[{"name": "alice", "secret": ALICE, "tools": ["*"], "team": "platform"}],
    )
    limited["customers"] = [{"name": "acme", "budget": {"max_usd": 50, "reset": "1M"}}]
    limited["teams"] = [{"name": "platform", "customer": "acme", "rate_limit": {"requests": 10, "period": "1h"}}]
    async with running_hub(limited, tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            for n in range(3):
                await client.call_tool("fixture__echo", {"message": f"m{n}"})
        async with browser_like(running.base) as http:
            await sign_in(http)
            page = await http.get("/ui/teams")
        assert page.status_code == 200
        gauges = re.findall(r'aria-label="(requests per [^:"]+): ([\d.]+) of ([\d.]+)"', page.text)
        assert gauges and gauges[0][2] == "10.00"
        assert float(gauges[0][1]) >= 3  # the three tool calls, and the session's other governed calls
        assert "acme" in page.text and "$50.0 / 1M" in page.text


async def test_the_guardrails_page_lists_the_rules_and_the_calls_they_refused(tmp_path: Path) -> None:
    guarded = config()
    guarded["guardrails"] = [
        {
            "name": "codename",
            "kind": "regex",
            "pattern": r"(?i)project\s+falcon",
            "apply_to": "input",
            "action": "block",
        }
    ]
    async with running_hub(guarded, tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            with pytest.raises(MCPError):
                await client.call_tool("fixture__echo", {"message": "ship Project Falcon on friday"})
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with browser_like(running.base) as http:
            await sign_in(http)
            page = await http.get("/ui/guardrails")
        assert page.status_code == 200
        rules = page.text.split("Recent refusals")[0]
        assert "codename" in rules and "regex" in rules and "config" in rules
        refusals = page.text.split("Recent refusals")[1]
        assert "fixture__echo" in refusals and "alice" in refusals


async def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_crash(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        await http.get("/ui/signin")  # the form's own token is now a cookie: the one sent is compared with it
        pre = await http.post("/ui/signin", data={"csrf": "é" * 10, "token": ADMIN})
        assert pre.status_code == 403
        await sign_in(http)
        for path in ("/ui/keys", "/ui/signout"):
            refused = await http.post(path, data={"csrf": "ü" * 43, "name": "x"})
            assert refused.status_code == 403, path


def test_a_page_view_writes_the_session_only_once_in_a_while(tmp_path: Path) -> None:
    now = [1000.0]
    engine = create_engine(f"sqlite:///{tmp_path / 'sessions.db'}")
    sessions = Sessions(engine, b"k" * 32, idle_seconds=600, clock=lambda: now[0])
    assert sessions.touch_seconds == 60

    def stored() -> float:
        with engine.connect() as conn:
            return float(conn.execute(select(TABLE.c.last_used)).scalar_one())

    opened = sessions.open("a", "alice")
    now[0] += 30
    assert sessions.get(opened.id) is not None and stored() == 1000.0  # a read only
    now[0] += 40
    assert sessions.get(opened.id) is not None and stored() == 1070.0  # 70 s since the last write
    engine.dispose()

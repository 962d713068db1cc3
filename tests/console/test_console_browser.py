"""The console in a real Chromium: sign in, keys end to end with the `mcp` SDK, adding a server, the failing call's
tree, a viewer, CSRF, XSS, JavaScript off, and accessibility (axe-core)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import MCPError
from playwright.async_api import Dialog, Page

from tests.admin.helpers import admin_client
from tests.console.browser import axe_source, chromium, screenshot, serious_violations, sign_in
from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools import SERVERS_DIR

pytestmark = pytest.mark.anyio

SCRIPT = "<script>alert('owned')</script>"


def config() -> dict[str, Any]:
    return base_config({"fixture": fixture_stdio("fixture", "--note", SCRIPT)})


def dialogs(page: Page) -> list[str]:
    """Every dialog the page opens (an executed `alert` would land here), dismissed."""
    seen: list[str] = []

    async def record(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record)
    return seen


async def test_create_a_key_use_it_revoke_it_and_see_the_next_call_refused(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await sign_in(page, running.base)
        await screenshot(page, "keys")
        await page.get_by_label("Name", exact=True).fill("from-browser")
        await page.get_by_label("Tools (globs, one per line)").fill("fixture__echo\nfixture__add")
        await page.get_by_label("Budget (USD)").fill("5")
        await page.get_by_role("button", name="Create key").click()
        secret = (await page.locator("#new-secret").inner_text()).strip()
        assert secret.startswith("ahk-")
        assert await page.get_by_role("button", name="Copy").is_visible()  # the script revealed it
        assert secret not in page.url
        async with mcp_client(running.url(), secret) as client:
            listed = sorted(t.name for t in (await client.list_tools()).tools)
            assert listed == ["fixture__add", "fixture__echo"]
            assert not (await client.call_tool("fixture__echo", {"message": "hi"})).is_error
        await page.get_by_role("link", name="from-browser").click()
        sees = page.locator("section", has=page.get_by_role("heading", name="What this key sees"))
        assert "fixture__echo" in await sees.inner_text()
        await screenshot(page, "key")
        await page.get_by_role("button", name="Revoke this key").click()
        await page.wait_for_url(f"{running.base}/ui/keys")
        assert "was revoked" in await page.locator(".flash").inner_text()
        with pytest.raises(BaseException) as refused:
            async with mcp_client(running.url(), secret) as client:
                await client.call_tool("fixture__echo", {"message": "hi"})
        assert "a valid virtual key is required" in repr(refused.value)


async def test_add_a_server_and_see_its_tools(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await sign_in(page, running.base)
        await page.get_by_role("link", name="MCP servers").click()
        await page.get_by_label("Name", exact=True).fill("extra")
        await page.get_by_label("Command (stdio)").fill(sys.executable)
        await page.get_by_label("Arguments (stdio, one per line)").fill(
            f"{SERVERS_DIR / 'fixture_server.py'}\n--name\nextra"
        )
        await page.get_by_role("button", name="Add server").click()
        await page.wait_for_url(f"{running.base}/ui/servers/extra")
        assert "was added" in await page.locator(".flash").inner_text()
        async with admin_client(running.base) as api:
            assert (await api.get("/api/v1/servers/extra")).status_code == 200
        await page.goto(f"{running.base}/ui/servers")
        await screenshot(page, "servers")
        assert await page.get_by_role("link", name="extra").is_visible()


async def test_find_a_failing_call_in_the_log_and_open_its_tree(tmp_path: Path) -> None:
    logged = base_config(
        {"fixture": fixture_stdio()},
        keys=[{"name": "coder", "secret": ALICE, "tools": ["fixture__*"], "code_mode": True}],
        log_bodies="errors",
    )
    program = "print(fixture.echo(message='step one'))\nfixture.fail(reason='the disk is full')\n"
    async with running_hub(logged, tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            assert not (await client.call_tool("execute_tool_code", {"code": "print(1)"})).is_error
            assert (await client.call_tool("execute_tool_code", {"code": program})).is_error
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            await sign_in(page, running.base)
            await page.get_by_role("link", name="Request log").click()
            await page.get_by_label("Operation").fill("code.run")
            await page.get_by_role("button", name="Filter").click()
            rows = page.locator("#log-rows tr")
            assert await rows.count() == 2
            newest = await rows.first.inner_text()
            assert "execute_tool_code" in newest and "ok" not in newest.split("\t")[4]
            await screenshot(page, "logs")
            await rows.first.get_by_role("link").click()
            assert "/ui/logs/" in page.url
            assert "3 call(s) in this tree" in await page.locator("main").inner_text()
            inner = page.locator(".tree details details")  # the program's own tool calls, nested under it
            assert await inner.count() == 2
            first, second = await inner.nth(0).inner_text(), await inner.nth(1).inner_text()
            assert "fixture__echo" in first and "ok" in first
            assert "fixture__fail" in second and "tool_error" in second and "the disk is full" in second
            await screenshot(page, "call")


async def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running:
        async with admin_client(running.base) as api:
            viewer = (await api.post("/api/v1/tokens", json={"name": "looker", "roles": ["viewer"]})).json()["secret"]
            await api.post("/api/v1/keys", json={"name": "existing", "tools": ["*"]})
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            await sign_in(page, running.base, viewer)
            assert await page.get_by_role("button", name="Create key").count() == 0
            await page.get_by_role("link", name="existing").click()
            assert await page.get_by_role("button", name="Revoke this key").count() == 0
            assert await page.get_by_role("button", name="Save changes").count() == 0
            csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
            assert csrf
            forged = await page.request.post(
                f"{running.base}/ui/keys", form={"csrf": csrf, "name": "viewer-made"}, max_redirects=0
            )
            assert forged.status == 403 and "Not allowed" in await forged.text()
        async with admin_client(running.base) as api:
            names = [k["name"] for k in (await api.get("/api/v1/keys")).json()["data"]]
            audit = (await api.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
        assert "viewer-made" not in names
        assert any(e["actor"] == "token:looker" and e["outcome"] == "denied" for e in audit)


async def test_posts_without_or_with_a_wrong_csrf_token_are_refused(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await sign_in(page, running.base)
        forms: list[dict[str, str | float | bool]] = [{"name": "no-token"}, {"name": "bad-token", "csrf": "0" * 43}]
        for form in forms:
            answer = await page.request.post(f"{running.base}/ui/keys", form=form, max_redirects=0)
            assert answer.status == 403, form
        async with admin_client(running.base) as api:
            names = {k["name"] for k in (await api.get("/api/v1/keys")).json()["data"]}
        assert not names & {"no-token", "bad-token"}


async def test_script_in_a_tool_description_and_a_log_entry_stays_inert(tmp_path: Path) -> None:
    logged = config()
    logged["hub"]["log_bodies"] = "errors"
    async with running_hub(logged, tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            assert (await client.call_tool("fixture__fail", {"reason": SCRIPT})).is_error
            with pytest.raises(MCPError):  # no such tool: refused, and logged under the name asked for
                await client.call_tool(SCRIPT, {})
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            fired = dialogs(page)
            await sign_in(page, running.base)
            await page.goto(f"{running.base}/ui/servers/fixture")
            assert await page.get_by_text(SCRIPT, exact=True).count() >= 1  # the description, as text
            await page.goto(f"{running.base}/ui/logs")
            assert SCRIPT in await page.locator("#log-rows").inner_text()
            await page.goto(f"{running.base}/ui/logs?tool=fail")
            await page.locator("#log-rows a").first.click()
            assert SCRIPT in await page.locator(".tree").inner_text()
            assert fired == []


async def test_pages_read_with_javascript_disabled(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            for n in range(60):  # more than one page of the log
                await client.call_tool("fixture__echo", {"message": f"m{n}"})
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with chromium() as browser:
            page = await (await browser.new_context(java_script_enabled=False)).new_page()
            await sign_in(page, running.base)
            assert await page.get_by_role("heading", name="Virtual keys").is_visible()
            await page.goto(f"{running.base}/ui/servers/fixture")
            assert await page.get_by_role("cell", name="echo", exact=True).count() == 1
            await page.goto(f"{running.base}/ui/logs")
            first = await page.locator("#log-rows tr").count()
            await page.get_by_role("link", name="More").click()  # a plain link: the next page
            assert "cursor=" in page.url
            assert await page.locator("#log-rows tr").count() >= 10
            assert first == 51  # 50 rows and the "more" row
            await page.goto(f"{running.base}/ui/audit")
            assert await page.get_by_role("heading", name="Audit log").is_visible()


async def test_more_rows_load_in_place_when_scrolled_with_javascript(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            for n in range(60):
                await client.call_tool("fixture__echo", {"message": f"m{n}"})
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            await sign_in(page, running.base)
            await page.goto(f"{running.base}/ui/logs")
            await page.locator("#more-row").scroll_into_view_if_needed()
            await page.locator("#log-rows tr").nth(51).wait_for(state="attached")  # past the first page
            assert page.url == f"{running.base}/ui/logs"  # the same page, grown


async def test_no_serious_accessibility_violations(tmp_path: Path) -> None:
    source = axe_source()
    async with running_hub(config(), tmp_path) as running:
        async with mcp_client(running.url(), ALICE) as client:
            await client.call_tool("fixture__fail", {"reason": "x"})
        assert running.hub.request_log is not None
        await running.hub.request_log.flush()
        async with admin_client(running.base) as api:
            key_id = (await api.post("/api/v1/keys", json={"name": "k1", "tools": ["*"]})).json()["id"]
        async with chromium() as browser:
            page = await (await browser.new_context(bypass_csp=True)).new_page()
            await page.goto(f"{running.base}/ui/signin")
            await screenshot(page, "signin")
            found = {"signin": await serious_violations(page, source)}
            await sign_in(page, running.base)
            for name in (
                "overview",
                "keys",
                f"keys/{key_id}",
                "teams",
                "servers",
                "servers/fixture",
                "models",
                "guardrails",
                "logs",
                "audit",
            ):
                await page.goto(f"{running.base}/ui/{name}")
                found[name] = await serious_violations(page, source)
                if name in ("overview", "teams", "models", "guardrails"):
                    await screenshot(page, name)
            await page.goto(f"{running.base}/ui/audit?verify=1")
            await screenshot(page, "audit")
            await page.goto(f"{running.base}/ui/logs")
            await page.locator("#log-rows a").first.click()
            found["call"] = await serious_violations(page, source)
        assert {name: v for name, v in found.items() if v} == {}


async def test_keyboard_reaches_the_sign_in_form_and_submits_it(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{running.base}/ui/signin")
        await page.keyboard.press("Tab")  # the skip link
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.id") == "token"
        from tests.admin.conftest import ADMIN

        await page.keyboard.type(ADMIN)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{running.base}/ui/overview")
        async with httpx2.AsyncClient(base_url=running.base) as http:
            assert (await http.get("/ui/keys", follow_redirects=False)).status_code == 303  # no shared cookie

"""The MCP Inspector CLI (a real Node subprocess) given only the hub's `/mcp` URL: it discovers the hub's
authorization server, registers itself, and waits on its loopback callback while the person signs in. Its CLI mode
has no scripted browser, but with `MCP_AUTO_OPEN_ENABLED=true` it prints the authorization URL ("Please navigate
to: ...") without a terminal; the test's browser follows that URL through the hub, the IdP and the consent page
to the Inspector's own callback listener, and the Inspector then calls the tool as the person."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from sqlalchemy import text

from tests.signin.helpers import Browser, signin_hub
from tests.tools import NodeToolsMissing, free_port, node_tools
from tests.tools.node import INSTALL_HINT
from tests.tools.patience import PATIENCE
from tests.tools.requirements import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

_NAVIGATE = re.compile(r"navigate to: (\S+)")


async def _authorization_url(process: Process, seen: list[str]) -> str:
    """The URL the Inspector asks the person to open (read from its stderr as it runs)."""
    assert process.stderr is not None
    buffered = ""
    async for chunk in TextReceiveStream(process.stderr):
        buffered += chunk
        *lines, buffered = buffered.split("\n")
        seen.extend(lines)
        for line in lines:
            found = _NAVIGATE.search(re.sub(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\\\", "", line))
            if found is not None:
                return found.group(1)
    pytest.fail("the Inspector never asked for a sign-in: " + "\n".join(seen))


async def test_the_inspector_signs_a_person_in_and_calls_a_tool_as_them(tmp_path: Path) -> None:
    try:
        tools = node_tools()
    except NodeToolsMissing as exc:
        unavailable(f"the Node tools ({exc})", INSTALL_HINT)
    storage = tmp_path / "inspector"
    storage.mkdir()
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    env = tools.env()
    env.update({"MCP_STORAGE_DIR": str(storage), "MCP_INSPECTOR_OAUTH_STATE_PATH": str(storage / "oauth.json"),
                "MCP_AUTO_OPEN_ENABLED": "true", "MCP_CATALOG_PATH": str(storage / "mcp.json"),
                "MCP_CLIENT_CONFIG_PATH": str(storage / "client.json")})  # fmt: skip
    async with signin_hub(tmp_path) as hub:
        argv = tools.inspector_cli(
            "--format", "json", "-q", "--connect-timeout", str(int(PATIENCE * 1000)), "--server-url", hub.url("/mcp"),
            "--transport", "http", "--callback-url", callback, "--method", "tools/call", "--tool-name",
            "fixture__echo", "--tool-arg", "message=from the inspector",
        )  # fmt: skip
        process = await anyio.open_process(argv, env=env, cwd=storage)
        seen: list[str] = []
        try:
            with anyio.fail_after(2 * PATIENCE):
                url = await _authorization_url(process, seen)
                assert url.startswith(hub.url("/signin/authorize?"))
                dana = Browser("dana", redirect=callback, deliver=True)
                await dana.visit(url)
                assert process.stdout is not None
                out = "".join([chunk async for chunk in TextReceiveStream(process.stdout)])
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
        assert code == 0, (code, out, "\n".join(seen))
        result = json.loads(out)["result"]
        assert result["content"] == [{"type": "text", "text": "from the inspector"}]
        assert len(dana.consents) == 1 and dana.landed[-1]["iss"] == hub.base

        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        with hub.hub.store.engine.connect() as conn:
            rows = conn.execute(text("SELECT key_name FROM request_log WHERE target = 'fixture__echo'")).all()
        assert [row[0] for row in rows] == ["user:dana@example.com"]

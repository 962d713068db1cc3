"""`POST /v1/mcp/tool/execute`, key management through the CLI, and revocation without restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from hub.cli.main import main as cli
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


def _tool_call(name: str, arguments: str = "{}", call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


async def test_an_openai_tool_call_runs_and_comes_back_as_a_tool_message(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=20) as http:
        url = hub.url("/v1/mcp/tool/execute")
        ok = await http.post(
            url, json=_tool_call("fixture__echo", '{"message": "hi"}'), headers={"Authorization": f"Bearer {ALICE}"}
        )
        structured = await http.post(
            url, json=_tool_call("fixture__add", '{"a": 1, "b": 2}', "c2"), headers={"x-api-key": ALICE}
        )
        failed = await http.post(
            url, json=_tool_call("fixture__fail", '{"reason": "nope"}'), headers={"api-key": ALICE}
        )
    assert ok.status_code == 200
    assert ok.json() == {"role": "tool", "tool_call_id": "call_1", "content": "hi"}
    assert structured.json()["tool_call_id"] == "c2" and "3" in structured.json()["content"]
    assert failed.status_code == 200 and failed.headers["x-agenthub-tool-error"] == "true"
    assert "nope" in failed.json()["content"]


async def test_rest_errors_use_the_openai_envelope_and_status_table(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=20) as http:
        url = hub.url("/v1/mcp/tool/execute")
        bob = {"Authorization": f"Bearer {BOB}"}
        no_key = await http.post(url, json=_tool_call("fixture__echo"))
        denied = await http.post(url, json=_tool_call("fixture__add", '{"a":1,"b":2}'), headers=bob)
        unknown = await http.post(url, json=_tool_call("fixture__zzz"), headers=bob)
        not_json = await http.post(url, content=b"{oops", headers=bob)
        bad_args = await http.post(url, json=_tool_call("fixture__echo", "[1,2]"), headers=bob)
        bad_shape = await http.post(url, json={"function": {"name": 3}}, headers=bob)
    assert no_key.status_code == 401 and no_key.headers["www-authenticate"].startswith("Bearer")
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert denied.status_code == unknown.status_code == 404
    assert denied.json()["error"]["message"] == "unknown tool: fixture__add"
    for response in (not_json, bad_args, bad_shape):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_keys_created_listed_and_revoked_by_the_cli_take_effect_without_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub:
        config_file = tmp_path / "cli.toml"
        config_file.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n')
        code = await anyio.to_thread.run_sync(
            cli, ["keys", "create", "--config", str(config_file), "--name", "carol", "--tools", "fixture__echo"]
        )
        assert code == 0
        secret = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ahk-"))
        with anyio.fail_after(PATIENCE):
            while hub.hub.keyring.verify(secret) is None:  # noqa: ASYNC110 - the hub polls the store
                await anyio.sleep(0.05)
        async with mcp_client(hub.url(), secret) as carol:
            names = [t.name for t in (await carol.list_tools()).tools]
            await anyio.to_thread.run_sync(cli, ["keys", "revoke", "--config", str(config_file), "carol"])
            with anyio.fail_after(PATIENCE):
                while hub.hub.keyring.verify(secret) is not None:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            with pytest.raises(MCPError) as revoked:
                await carol.call_tool("fixture__echo", {"message": "after revoke"})
        await anyio.to_thread.run_sync(cli, ["keys", "list", "--config", str(config_file), "--all"])
        listing = capsys.readouterr().out
        duplicate = await anyio.to_thread.run_sync(
            cli, ["keys", "create", "--config", str(config_file), "--name", "alice"]
        )
    assert names == ["fixture__echo"]
    assert revoked.value.error.code == -32001
    assert "carol" in listing and "(revoked)" in listing and "alice" in listing
    assert duplicate == 1


async def test_only_a_hash_of_each_secret_is_stored(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub:
        rows = hub.hub.store.list_keys()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("hub.db*"))
    assert {r.name for r in rows} == {"alice", "bob"}
    assert ALICE.encode() not in raw and BOB.encode() not in raw
    assert all(len(r.secret_hash) == 64 for r in rows)


async def test_a_batch_of_tool_calls_runs_in_parallel_with_one_message_each(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    batch = {
        "tool_calls": [
            _tool_call("fixture__echo", '{"message": "one"}', "a"),
            _tool_call("fixture__add", '{"a": 2, "b": 2}', "b"),
            _tool_call("fixture__nope", "{}", "c"),
        ]
    }
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=20) as http:
        url = hub.url("/v1/mcp/tool/execute")
        ok = await http.post(url, json=batch, headers={"Authorization": f"Bearer {ALICE}"})
        empty = await http.post(url, json={"tool_calls": []}, headers={"Authorization": f"Bearer {ALICE}"})
    messages = ok.json()["messages"]
    assert ok.status_code == 200
    assert [m["tool_call_id"] for m in messages] == ["a", "b", "c"]
    assert messages[0]["content"] == "one" and "4" in messages[1]["content"]
    assert messages[2]["content"] == "error: unknown tool: fixture__nope"
    assert empty.status_code == 400

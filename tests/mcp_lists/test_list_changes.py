"""List-changed notifications reach exactly the sessions whose visible catalog changed: per key, per endpoint, for
every cause (an upstream's list change, a run-time server added or removed, a key's grants, a pin approval), on
handshake-era sessions (their notification stream) and 2026-07-28 clients (`subscriptions/listen`) alike.

That a client heard nothing of a change is shown by order (see `tests.mcp_lists.harness`): after that change, a
second one of ANOTHER kind that the client does see (its key loses the fixture's `greeting` prompt: a prompts-only
change), and the first thing it hears is that second one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.hub.harness import ALICE, base_config, fixture_stdio
from tests.mcp_lists.harness import (
    MODERN_META,
    Heard,
    admin_api,
    hearing_client,
    lists_hub,
    new_key,
    rpc_result,
    until_view,
)
from tests.tools import served, server_argv
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]
NO_GREETING = "fixture__[!g]*"
"""Every fixture entry but the `greeting` prompt (no fixture tool or resource name starts with a `g`)."""


def _streams(mode: str, count: int) -> int:
    """How many notification streams `count` clients open (only handshake-era clients open one)."""
    return count if mode == "legacy" else 0


async def _grant(api: httpx2.AsyncClient, key_id: str, tools: list[str]) -> None:
    changed = await api.patch(f"/api/v1/keys/{key_id}", json={"tools": tools})
    assert changed.status_code == 200, changed.text


@pytest.mark.parametrize("mode", ERAS)
async def test_a_change_only_reaches_the_keys_that_see_it(tmp_path: Path, mode: str) -> None:
    ann_heard, ben_heard = Heard(), Heard()
    async with lists_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub, admin_api(hub) as api:
        _, ann = await new_key(api, "ann", ["*"])
        ben_id, ben = await new_key(api, "ben", ["fixture__echo", "fixture__greeting"])
        async with (
            hearing_client(hub.url(), ann, ann_heard, mode=mode) as client,
            hearing_client(hub.url(), ben, ben_heard, mode=mode),
        ):
            await hub.streams.until(_streams(mode, 2))
            await client.call_tool("fixture__add_tool", {"name": "late"})  # ben's key does not reach it
            first = await ann_heard.until(1)
            await _grant(api, ben_id, ["fixture__echo"])
            ben_first = await ben_heard.until(1)
            await client.call_tool("fixture__add_tool", {"name": "later"})
            ann_both = await ann_heard.until(2)
    assert first == ["tools"]
    assert ben_first == ["prompts"]  # the first change was not his to see
    assert ann_both == ["tools", "tools"]  # prompts and resources did not change for her


@pytest.mark.parametrize("mode", ERAS)
async def test_a_server_endpoint_only_hears_of_its_server(tmp_path: Path, mode: str) -> None:
    config = base_config({"fixture": fixture_stdio(), "other": fixture_stdio("other")})
    whole, alone = Heard(), Heard()
    async with lists_hub(config, tmp_path) as hub, admin_api(hub) as api:
        key_id, secret = await new_key(api, "ann", ["*"])
        async with (
            hearing_client(hub.url(), secret, whole, mode=mode) as client,
            hearing_client(hub.url("/mcp/fixture"), secret, alone, mode=mode),
        ):
            await hub.streams.until(_streams(mode, 2))
            await client.call_tool("other__add_tool", {"name": "late"})
            assert await whole.until(1) == ["tools"]
            await _grant(api, key_id, [NO_GREETING, "other__*"])
            heard_alone = await alone.until(1)
            heard_whole = await whole.until(2)
    assert heard_alone == ["prompts"]
    assert heard_whole == ["tools", "prompts"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_grant_change_reaches_only_that_keys_sessions(tmp_path: Path, mode: str) -> None:
    carol_heard, dave_heard = Heard(), Heard()
    async with lists_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub, admin_api(hub) as api:
        carol_id, carol = await new_key(api, "carol", ["fixture__echo"])
        dave_id, dave = await new_key(api, "dave", ["fixture__echo"])
        async with (
            hearing_client(hub.url(), carol, carol_heard, mode=mode),
            hearing_client(hub.url(), dave, dave_heard, mode=mode),
        ):
            await hub.streams.until(_streams(mode, 2))
            await _grant(api, carol_id, ["fixture__echo", "fixture__add"])
            carol_first = await carol_heard.until(1)
            await _grant(api, dave_id, ["fixture__echo", "nothing__*"])  # a grant change dave's lists do not show
            await _grant(api, dave_id, ["fixture__echo", "fixture__greeting"])
            dave_first = await dave_heard.until(1)
            await _grant(api, carol_id, ["fixture__echo"])
            carol_both = await carol_heard.until(2)
    assert carol_first == ["tools"]
    assert dave_first == ["prompts"]  # neither carol's change nor his own invisible one
    assert carol_both == ["tools", "tools"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ERAS)
async def test_adding_and_removing_a_server_at_run_time(tmp_path: Path, mode: str) -> None:
    argv = server_argv("fixture_server", "--transport", "streamable-http", "--port", "{port}", "--name", "extra")
    config: dict[str, Any] = base_config({"fixture": fixture_stdio()})
    config["admin"] = {"allowed_endpoints": ["http://127.0.0.1:*"]}
    ann_heard, ben_heard = Heard(), Heard()
    async with served(argv) as upstream, lists_hub(config, tmp_path) as hub, admin_api(hub) as api:
        _, ann = await new_key(api, "ann", ["*"])
        # The new server is a fixture too: its resource URIs collide with the fixture's, which changes how the
        # fixture's resources are exposed; ben's key reaches no resource, so that is not his to hear either.
        ben_id, ben = await new_key(api, "ben", ["fixture__echo", "fixture__greeting"])
        async with (
            hearing_client(hub.url(), ann, ann_heard, mode=mode),
            hearing_client(hub.url(), ben, ben_heard, mode=mode),
        ):
            await hub.streams.until(_streams(mode, 2))
            url = f"http://127.0.0.1:{upstream.port}/mcp"
            added = await api.post("/api/v1/servers", json={"name": "extra", "transport": "http", "url": url})
            assert added.status_code == 201, added.text
            await until_view(hub, lambda v: "extra__echo" in v.tools)
            on_add = await ann_heard.until(3)
            removed = await api.delete("/api/v1/servers/extra")
            assert removed.status_code == 200, removed.text
            on_remove = await ann_heard.until(6)
            await _grant(api, ben_id, ["fixture__echo"])
            ben_first = await ben_heard.until(1)
    assert sorted(on_add) == ["prompts", "resources", "tools"]  # the new server has all three
    assert sorted(on_remove[3:]) == ["prompts", "resources", "tools"]
    assert ben_first == ["prompts"]  # his key reaches none of `extra`'s entries


@pytest.mark.parametrize("mode", ERAS)
async def test_a_pin_approval_brings_the_tool_back_and_says_so(tmp_path: Path, mode: str) -> None:
    config = base_config({"fixture": {**fixture_stdio(), "pin": True}})
    heard = Heard()
    async with lists_hub(config, tmp_path) as hub, admin_api(hub) as api:
        await until_view(hub, lambda v: "fixture__echo" in v.tools)
        async with hearing_client(hub.url(), ALICE, heard, mode=mode) as alice:
            await hub.streams.until(_streams(mode, 1))
            await alice.call_tool("fixture__set_description", {"tool": "echo", "description": "Changed."})
            held = await heard.until(1)  # the changed definition is held back: the list lost `echo`
            assert "fixture__echo" not in {t.name for t in (await alice.list_tools()).tools}
            approved = await api.post("/api/v1/servers/fixture/approve")
            assert approved.status_code == 200, approved.text
            back = await heard.until(2)
            tools = {t.name: t.description for t in (await alice.list_tools()).tools}
    assert held == ["tools"]
    assert back == ["tools", "tools"]
    assert tools["fixture__echo"] == "Changed."


async def test_both_revisions_advertise_list_changes(tmp_path: Path) -> None:
    """`listChanged` for tools, prompts and resources in both revisions (the handshake's capabilities; the
    2026-07-28 `server/discover` result, read off the wire, as `subscriptions/listen` is served); resource
    subscriptions stay off in 2026-07-28, whose listen streams carry list changes only."""
    headers = {
        "Authorization": f"Bearer {ALICE}",
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": "server/discover",
    }
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": MODERN_META}}
    async with lists_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub:
        async with hearing_client(hub.url(), ALICE, Heard()) as legacy:
            old = legacy.server_capabilities.model_dump(by_alias=True, exclude_none=True)
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            new = rpc_result(await http.post(hub.url(), json=discover, headers=headers))["capabilities"]
    for caps in (old, new):
        for kind in ("tools", "prompts", "resources"):
            assert caps[kind]["listChanged"] is True, (kind, caps)
    assert old["resources"]["subscribe"] is True
    assert new["resources"]["subscribe"] is False


@pytest.mark.parametrize("mode", ERAS)
async def test_a_key_with_tool_search_hears_no_tool_change_since_its_two_tools_never_change(
    tmp_path: Path, mode: str
) -> None:
    heard = Heard()
    async with lists_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub, admin_api(hub) as api:
        created = await api.post("/api/v1/keys", json={"name": "sam", "tools": ["*"], "tool_search": True})
        assert created.status_code == 201, created.text
        key_id, secret = created.json()["id"], created.json()["secret"]
        async with hearing_client(hub.url(), secret, heard, mode=mode) as client:
            await hub.streams.until(_streams(mode, 1))
            added = await client.call_tool("call_tool", {"name": "fixture__add_tool", "arguments": {"name": "late"}})
            assert not added.is_error
            await _grant(api, key_id, [NO_GREETING])
            first = await heard.until(1)
    assert first == ["prompts"]  # the tools it is shown (search_tools, call_tool) did not change

"""Cursor pagination of every MCP list when a catalog is larger than `[hub] list_page_size`: full pages in a stable
order, a cursor that stays valid when the catalog changes between two pages, and the spec's invalid-params error
for a cursor the hub did not make for that list (both revisions; handshake-era `tools/list` also on the fast path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub
from tests.mcp_lists.harness import until_view

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]
PAGE = 3


def _config(page: int = PAGE) -> dict[str, Any]:
    return base_config({"fixture": fixture_stdio(), "other": fixture_stdio("other")}, list_page_size=page)


Lister = Callable[[str | None], Awaitable[tuple[list[str], str | None]]]


def _lister(client: Client, kind: str) -> Lister:
    async def page(cursor: str | None) -> tuple[list[str], str | None]:
        if kind == "tools":
            tools = await client.list_tools(cursor=cursor, cache_mode="bypass")
            return [t.name for t in tools.tools], tools.next_cursor
        if kind == "prompts":
            prompts = await client.list_prompts(cursor=cursor, cache_mode="bypass")
            return [p.name for p in prompts.prompts], prompts.next_cursor
        if kind == "resources":
            resources = await client.list_resources(cursor=cursor, cache_mode="bypass")
            return [str(r.uri) for r in resources.resources], resources.next_cursor
        templates = await client.list_resource_templates(cursor=cursor, cache_mode="bypass")
        return [t.uri_template for t in templates.resource_templates], templates.next_cursor

    return page


async def _pages(lister: Lister) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        names, cursor = await lister(cursor)
        pages.append(names)
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursors do not end"


@pytest.mark.parametrize("mode", ERAS)
async def test_every_list_is_served_in_full_pages_of_a_stable_order(tmp_path: Path, mode: str) -> None:
    async with running_hub(_config(), tmp_path) as hub:
        await until_view(hub, lambda v: "other__echo" in v.tools and "fixture__echo" in v.tools)
        view = hub.hub.view()
        async with mcp_client(hub.url(), ALICE, mode=mode) as client:
            kinds = ("tools", "prompts", "resources", "templates")
            paged = {kind: await _pages(_lister(client, kind)) for kind in kinds}
            again = await _pages(_lister(client, "tools"))
        (tmp_path / "whole").mkdir()
        async with running_hub(_config(page=500), tmp_path / "whole") as whole:
            await until_view(whole, lambda v: "other__echo" in v.tools and "fixture__echo" in v.tools)
            async with mcp_client(whole.url(), ALICE, mode=mode) as client:
                one = await _pages(_lister(client, "tools"))
    for kind, pages in paged.items():
        assert all(len(p) == PAGE for p in pages[:-1]), (kind, pages)
        assert 1 <= len(pages[-1]) <= PAGE, (kind, pages)
    tools = [name for page in paged["tools"] for name in page]
    assert tools == sorted(view.tools) and len(paged["tools"]) > 2
    assert again == paged["tools"]
    assert one == [tools]  # the default page size serves this catalog in one page
    assert len([n for page in paged["prompts"] for n in page]) == len(view.prompts) == 4
    assert len([n for page in paged["resources"] for n in page]) == len(view.resources)
    assert len(paged["resources"]) == 2 and len(paged["templates"]) == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_a_cursor_stays_valid_when_the_catalog_changes_between_pages(tmp_path: Path, mode: str) -> None:
    async with running_hub(_config(), tmp_path) as hub:
        await until_view(hub, lambda v: "other__echo" in v.tools and "fixture__echo" in v.tools)
        before = sorted(hub.hub.view().tools)
        async with mcp_client(hub.url(), ALICE, mode=mode) as client:
            lister = _lister(client, "tools")
            first, cursor = await lister(None)
            await client.call_tool("fixture__add_tool", {"name": "aaa"})  # sorts before the first page's end
            await until_view(hub, lambda v: "fixture__aaa" in v.tools)
            await client.call_tool("other__add_tool", {"name": "zzz"})  # sorts after everything
            await until_view(hub, lambda v: "other__zzz" in v.tools)
            rest: list[str] = []
            while cursor is not None:
                names, cursor = await lister(cursor)
                rest += names
    assert first == before[:PAGE]
    assert rest == sorted(set(before[PAGE:]) | {"other__zzz"})  # nothing repeated, nothing present skipped


@pytest.mark.parametrize("mode", ERAS)
async def test_a_cursor_the_hub_did_not_make_for_that_list_is_invalid_params(tmp_path: Path, mode: str) -> None:
    async with running_hub(_config(page=1), tmp_path) as hub:
        await until_view(hub, lambda v: "fixture__greeting" in v.prompts)
        async with mcp_client(hub.url(), ALICE, mode=mode) as client:
            prompts_cursor = (await client.list_prompts()).next_cursor
            assert prompts_cursor is not None
            refusals: list[MCPError] = []
            for kind, cursor in (("tools", "not-a-cursor"), ("tools", prompts_cursor), ("resources", "e30")):
                with pytest.raises(MCPError) as refused:
                    await _lister(client, kind)(cursor)
                refusals.append(refused.value)
    assert [r.error.code for r in refusals] == [types.INVALID_PARAMS] * 3
    assert all(r.error.message == "invalid cursor" for r in refusals)

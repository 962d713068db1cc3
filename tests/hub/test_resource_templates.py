"""A resource template two servers offer is listed once per server, and each reads from its own server.

The first server (by name) keeps the template's spelling; a later server's is exposed as `server+template`, the
way a resource URI two servers offer is, so its concrete URIs (`beta+notes://7`) are what a client reads back on
`resources/read` and names in `completion/complete`. On a server's own endpoint (`/mcp/beta`) both keep the
upstream's spelling. The upstreams are real MCP servers in this process, driven through the real `mcp` SDK client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import mcp_types as types
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from connectors.registry import build_view
from connectors.upstream import Catalog
from tests.auth.servers import bound_socket, serve
from tests.hub.harness import ALICE, BOB, base_config, mcp_client, running_hub

pytestmark = pytest.mark.anyio

TEMPLATE = "notes://{note_id}"


def notes_server(name: str) -> MCPServer:
    """An upstream whose template reads name its server, and whose completion names it too."""
    server = MCPServer(name)

    @server.resource(TEMPLATE, name="note", mime_type="text/plain")
    def note(note_id: str) -> str:
        return f"{name} note {note_id}"

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        return Completion(values=[f"{name}-{argument.value}"], total=1, has_more=False)

    return server


@asynccontextmanager
async def two_note_servers() -> AsyncGenerator[dict[str, str]]:
    """`alpha` and `beta`, both offering `notes://{note_id}`, served over Streamable HTTP; their URLs by name."""
    sockets = {name: bound_socket() for name in ("alpha", "beta")}
    apps = [
        (notes_server(name).streamable_http_app(stateless_http=True, json_response=True), sock)
        for name, sock in sockets.items()
    ]
    async with serve(apps):
        yield {name: f"http://127.0.0.1:{sock.getsockname()[1]}/mcp" for name, sock in sockets.items()}


def _config(urls: dict[str, str]) -> dict[str, object]:
    servers = {name: {"transport": "http", "url": url} for name, url in urls.items()}
    keys = [
        {"name": "alice", "secret": ALICE, "tools": ["*"]},
        {"name": "bob", "secret": BOB, "tools": [f"beta__{TEMPLATE}"]},
    ]
    return base_config(servers, keys)


def _text(result: types.ReadResourceResult) -> tuple[str, str]:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    return str(content.uri), content.text


async def test_a_template_two_servers_offer_is_listed_and_read_on_each(tmp_path: Path) -> None:
    async with two_note_servers() as urls, running_hub(_config(urls), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp"), ALICE) as client:
            listed = (await client.list_resource_templates()).resource_templates
            first = await client.read_resource("notes://7")
            second = await client.read_resource("beta+notes://7")
            completed = await client.complete(
                ResourceTemplateReference(type="ref/resource", uri="beta+notes://{note_id}"),
                {"name": "note_id", "value": "7"},
            )
        async with mcp_client(hub.url("/mcp/beta"), ALICE) as client:
            own = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            direct = await client.read_resource("notes://7")
    assert sorted(t.uri_template for t in listed) == ["beta+notes://{note_id}", TEMPLATE]
    assert _text(first) == ("notes://7", "alpha note 7")
    assert _text(second) == ("beta+notes://7", "beta note 7")
    assert completed.completion.values == ["beta-7"]
    assert own == [TEMPLATE]
    assert _text(direct) == ("notes://7", "beta note 7")


async def test_a_key_granted_one_servers_template_sees_and_reads_only_that_one(tmp_path: Path) -> None:
    async with two_note_servers() as urls, running_hub(_config(urls), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp"), BOB) as client:
            listed = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            read = await client.read_resource("beta+notes://3")
            with pytest.raises(MCPError) as refused:
                await client.read_resource("notes://3")
    assert listed == ["beta+notes://{note_id}"]
    assert _text(read) == ("beta+notes://3", "beta note 3")
    assert refused.value.error.code == -32602 and "unknown resource" in refused.value.error.message


@dataclass
class _Upstream:
    """What `build_view` reads of an upstream: its name and catalog."""

    name: str
    catalog: Catalog


def test_a_template_whose_exposed_spelling_is_taken_is_left_out_never_swapped_in() -> None:
    """As with resource URIs: when `beta+x://{id}` is already another server's own template, beta's `x://{id}` is
    left out, so an exposed template always reads what it read before."""

    def template(uri: str) -> types.ResourceTemplate:
        return types.ResourceTemplate(uri_template=uri, name=uri)

    alpha = _Upstream("alpha", Catalog(templates=(template("x://{id}"), template("beta+x://{id}"))))
    beta = _Upstream("beta", Catalog(templates=(template("x://{id}"), template("y://{id}"))))
    gamma = _Upstream("gamma", Catalog(templates=(template("y://{id}"),)))
    view = build_view([gamma, beta, alpha], 1)  # type: ignore[list-item]
    assert [(e.exposed, e.server, e.original) for _, e in view.templates] == [
        ("x://{id}", "alpha", "x://{id}"),
        ("beta+x://{id}", "alpha", "beta+x://{id}"),
        ("y://{id}", "beta", "y://{id}"),
        ("gamma+y://{id}", "gamma", "y://{id}"),
    ]
    found = view.resolve_resource("gamma+y://5")
    assert found is not None and found.server == "gamma"
    scoped = view.resolve_resource("y://5", "gamma")
    assert scoped is not None and scoped.server == "gamma"

"""Admin handlers for virtual servers (`/api/v1/virtual-servers`), and their routes (added to the table in `ops`).

A virtual server is managed like an upstream server (the `servers` permissions): the config file's are listed
read-only, the API's are stored with their audit entry in one transaction, applied at once here and followed by
every other process through the change log. Its endpoint is `/mcp/v/NAME`.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

import orjson
from starlette.responses import Response

from hub.doors.admin.api import PREFIX, Change, Conflict, Ctx, Op, commit, json_response, off_loop
from hub.doors.admin.schema import VirtualServerIn
from hub.doors.mcp_virtual_store import VirtualCatalog
from hub.errors import BadRequest, Internal, NotFound
from hub.governance.rbac import AdminPrincipal
from hub.settings import VIRTUAL_NAME, VirtualServerConfig
from hub.store.tables import DuplicateName


class VirtualHost(Protocol):
    """What these handlers need of the running hub besides the admin host."""

    @property
    def virtual_catalog(self) -> VirtualCatalog | None: ...

    async def virtual_changed(self, names: list[str]) -> None: ...


def _host(ctx: Ctx) -> VirtualHost:
    return cast(VirtualHost, ctx.hub)


def _catalog(ctx: Ctx) -> VirtualCatalog:
    catalog = _host(ctx).virtual_catalog
    if catalog is None:
        raise Internal("the hub is not running")
    return catalog


def _view(name: str, config: VirtualServerConfig, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": source,
        "endpoint": f"/mcp/v/{name}",
        "config": config.model_dump(mode="json", exclude_none=True),
    }


def _parse(body: VirtualServerIn, name: str) -> VirtualServerConfig:
    if body.name not in (None, name):
        raise BadRequest("the body's name differs from the path's")
    if not re.match(VIRTUAL_NAME, name):
        raise BadRequest(f"invalid request: name: '{name[:64]}' must be letters, digits, '_', '.' or '-'")
    return VirtualServerConfig.model_validate(body.model_dump(exclude={"name"}))


def _stored_form(config: VirtualServerConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_none=True)


async def list_virtual_servers(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    catalog = _catalog(ctx)
    rows = [_view(n, c, "config") for n, c in sorted(catalog.configured.items())]
    rows += [_view(n, c, "api") for n, c in sorted(catalog.stored.items())]
    return json_response({"data": sorted(rows, key=lambda row: row["name"])})


async def get_virtual_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    catalog = _catalog(ctx)
    source = catalog.source(name)
    config = catalog.configured.get(name) or catalog.stored.get(name)
    if source is None or config is None:
        raise NotFound(f"no virtual server named '{name[:64]}'")
    return json_response(_view(name, config, source))


async def create_virtual_server(ctx: Ctx, who: AdminPrincipal, body: VirtualServerIn) -> Response:
    name = body.name
    if not name:
        raise BadRequest("invalid request: name: a virtual server name is required")
    config = _parse(body, name)
    catalog = _catalog(ctx)
    if name in catalog.configured or await off_loop(catalog.store.get, name) is not None:
        raise Conflict(f"a virtual server named '{name}' exists already")
    stored = _stored_form(config)
    change = Change("virtual_server.create", "virtual_server", name, None, {"name": name, **stored})
    try:
        await commit(ctx, who, lambda s: catalog.store.create(name, stored, s), lambda _none: change)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await catalog.apply(_host(ctx).virtual_changed)
    return json_response(_view(name, config, "api"), 201)


async def _stored(ctx: Ctx, catalog: VirtualCatalog, name: str) -> dict[str, Any]:
    if name in catalog.configured:
        raise Conflict(f"virtual server '{name}' is declared in the config file; change it there")
    row = await off_loop(catalog.store.get, name)
    if row is None:
        raise NotFound(f"no virtual server named '{name[:64]}'")
    before: dict[str, Any] = orjson.loads(row.config)
    return before


async def replace_virtual_server(ctx: Ctx, who: AdminPrincipal, body: VirtualServerIn) -> Response:
    name = ctx.params["name"]
    config = _parse(body, name)
    catalog = _catalog(ctx)
    before = await _stored(ctx, catalog, name)
    stored = _stored_form(config)
    change = Change("virtual_server.update", "virtual_server", name, before, stored)
    await commit(ctx, who, lambda s: catalog.store.save(name, stored, s), lambda _none: change)
    await catalog.apply(_host(ctx).virtual_changed)
    return json_response(_view(name, config, "api"))


async def delete_virtual_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    catalog = _catalog(ctx)
    before = await _stored(ctx, catalog, name)

    def change(deleted: bool) -> Change:
        if not deleted:
            raise NotFound(f"no virtual server named '{name[:64]}'")
        return Change("virtual_server.delete", "virtual_server", name, before, None)

    await commit(ctx, who, lambda s: catalog.store.delete(name, s), change)
    await catalog.apply(_host(ctx).virtual_changed)
    return json_response({"deleted": name})


_R = f"{PREFIX}/virtual-servers"
OPERATIONS: list[Op] = [
    Op("GET", _R, "Virtual servers (curated bundles served at /mcp/v/NAME)", list_virtual_servers, "servers"),
    Op("POST", _R, "Add a virtual server", create_virtual_server, "servers", "create", VirtualServerIn, 201),
    Op("GET", f"{_R}/{{name}}", "Get a virtual server", get_virtual_server, "servers"),
    Op("PUT", f"{_R}/{{name}}", "Replace a run-time virtual server", replace_virtual_server, "servers", "update",
       VirtualServerIn),
    Op("DELETE", f"{_R}/{{name}}", "Remove a run-time virtual server", delete_virtual_server, "servers", "delete"),
]  # fmt: skip

"""Admin handlers for guardrails and tool pinning, and their routes (added to the table in `ops`).

Guardrails: the config file's rules are listed read-only; rules made through the API are stored and in force
at once on every door (`GuardrailRules`). Pinning: `GET /servers/{name}/pins` reviews a server's tools against
what was approved, `POST /servers/{name}/approve` pins the current definitions (optionally only if they are the
ones reviewed: body `{"tools": {"name": "sha256", ...}}`), `DELETE /servers/{name}/pins` stops pinning. Every
change is audited.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from connectors.upstream import Upstream
from hub.doors.admin.api import PREFIX, Conflict, Ctx, Op, actor, json_response, off_loop, read_body, record
from hub.doors.admin.schema import ApproveIn
from hub.errors import BadRequest, Internal, NotFound
from hub.governance.rbac import AdminPrincipal
from hub.guardrails import GuardrailConfig, GuardrailConfigError
from hub.guardrails.pinning import PinMismatchError, ServerPins, ToolPins
from hub.guardrails.rules import GuardrailRules, check_references, public_form

# -- guardrails --------------------------------------------------------------------------------------------


def _rules(ctx: Ctx) -> GuardrailRules:
    rules = ctx.hub.guardrails
    if rules is None:
        raise Internal("the guardrails are not running")
    return rules


def _view(config: GuardrailConfig, source: str) -> dict[str, Any]:
    return {**public_form(config), "source": source}


async def list_guardrails(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    rules = _rules(ctx)
    data = [_view(c, "config") for c in rules.configured] + [_view(c, "api") for c in rules.stored]
    return json_response({"data": data})


async def get_guardrail(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    rules, name = _rules(ctx), ctx.params["name"]
    for config, source in [*((c, "config") for c in rules.configured), *((c, "api") for c in rules.stored)]:
        if config.name == name:
            return json_response(_view(config, source))
    raise NotFound(f"no guardrail named '{name}'")


def _check(config: GuardrailConfig) -> None:
    try:
        check_references(config)
        GuardrailRules.build([config])
    except (ValueError, GuardrailConfigError) as exc:
        raise BadRequest(f"invalid guardrail: {exc}") from None


async def _stored(ctx: Ctx, name: str) -> GuardrailConfig:
    rules = _rules(ctx)
    if any(c.name == name for c in rules.configured):
        raise Conflict(f"guardrail '{name}' is declared in the config file; change it there")
    found = await off_loop(rules.store.get, name)
    if found is None:
        raise NotFound(f"no guardrail named '{name}'")
    return found


async def create_guardrail(ctx: Ctx, who: AdminPrincipal, body: GuardrailConfig) -> Response:
    rules = _rules(ctx)
    if body.name in rules.names() or await off_loop(rules.store.get, body.name) is not None:
        raise Conflict(f"a guardrail named '{body.name}' exists already")
    _check(body)
    await off_loop(rules.store.save, body)
    await rules.apply()
    await record(ctx, who, "guardrail.create", "guardrail", body.name, None, public_form(body))
    return json_response(_view(body, "api"), 201)


async def replace_guardrail(ctx: Ctx, who: AdminPrincipal, body: GuardrailConfig) -> Response:
    name = ctx.params["name"]
    if body.name != name:
        raise BadRequest("the body's name differs from the path's")
    before = await _stored(ctx, name)
    _check(body)
    rules = _rules(ctx)
    await off_loop(rules.store.save, body)
    await rules.apply()
    await record(ctx, who, "guardrail.update", "guardrail", name, public_form(before), public_form(body))
    return json_response(_view(body, "api"))


async def delete_guardrail(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    before = await _stored(ctx, name)
    rules = _rules(ctx)
    await off_loop(rules.store.delete, name)
    await rules.apply()
    await record(ctx, who, "guardrail.delete", "guardrail", name, public_form(before), None)
    return json_response({"deleted": name})


# -- tool pinning ------------------------------------------------------------------------------------------


def _pins(ctx: Ctx) -> ToolPins:
    pins = ctx.hub.pins
    if pins is None:
        raise Internal("tool pinning is not running")
    return pins


def _upstream(ctx: Ctx) -> Upstream:
    name = ctx.params["name"]
    upstream = ctx.hub.registry.upstreams.get(name)
    if upstream is None:
        raise NotFound(f"no server named '{name}'")
    return upstream


def _summary(pins: ServerPins | None) -> dict[str, Any] | None:
    if pins is None:
        return None
    return {"tools": dict(sorted(pins.hashes.items())), "approved_by": pins.approved_by}


async def server_pins(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    upstream = _upstream(ctx)
    return json_response(_pins(ctx).status(upstream.name, upstream.catalog.tools))


async def approve_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    upstream = _upstream(ctx)
    body = ApproveIn()
    if ctx.request.headers.get("content-length", "0") != "0" or "transfer-encoding" in ctx.request.headers:
        body = await read_body(ctx.request, ApproveIn, ctx.hub.settings.admin.max_body_bytes)
    if not upstream.ready:
        raise Conflict(f"server '{upstream.name}' is not connected: its tools cannot be reviewed now")
    pins = _pins(ctx)
    try:
        before, after = await pins.approve(upstream.name, upstream.catalog.tools, actor(who), body.tools)
    except PinMismatchError as exc:
        raise Conflict(str(exc)) from None
    await record(ctx, who, "server.approve", "server", upstream.name, _summary(before), _summary(after))
    return json_response(pins.status(upstream.name, upstream.catalog.tools))


async def unpin_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    upstream = _upstream(ctx)
    if upstream.config.pin:
        raise Conflict(f"server '{upstream.name}' has pin = true in its configuration; change it there")
    pins = _pins(ctx)
    if pins.pins(upstream.name) is None:
        raise NotFound(f"server '{upstream.name}' is not pinned")
    before = await pins.unpin(upstream.name)
    await record(ctx, who, "server.unpin", "server", upstream.name, _summary(before), None)
    return json_response({"server": upstream.name, "pinned": False})


_R = PREFIX
OPERATIONS: list[Op] = [
    Op("GET", f"{_R}/guardrails", "Guardrails in force (config file and API)", list_guardrails, "guardrails"),
    Op("POST", f"{_R}/guardrails", "Add a guardrail (in force at once)", create_guardrail, "guardrails", "create",
       GuardrailConfig, 201),
    Op("GET", f"{_R}/guardrails/{{name}}", "Get a guardrail", get_guardrail, "guardrails"),
    Op("PUT", f"{_R}/guardrails/{{name}}", "Replace a guardrail added through the API", replace_guardrail,
       "guardrails", "update", GuardrailConfig),
    Op("DELETE", f"{_R}/guardrails/{{name}}", "Remove a guardrail added through the API", delete_guardrail,
       "guardrails", "delete"),
    Op("GET", f"{_R}/servers/{{name}}/pins", "Review a server's tool definitions against the approved ones",
       server_pins, "servers"),
    Op("POST", f"{_R}/servers/{{name}}/approve", "Approve (pin) a server's current tool definitions; optional body "
       "ApproveIn", approve_server, "servers", "update"),
    Op("DELETE", f"{_R}/servers/{{name}}/pins", "Stop pinning a server's tool definitions", unpin_server, "servers",
       "update"),
]  # fmt: skip

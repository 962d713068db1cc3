"""Admin handlers for guardrails and tool pinning, and their routes (added to the table in `ops`).

Guardrails: the config file's rules are listed read-only; rules made through the API are stored and in force
at once on every door (`GuardrailRules`); their credentials are references the operator allows and their service
endpoints pass the SSRF guard (`allowlists`). Pinning: `GET /servers/{name}/pins` reviews a server's tools against
what was approved, `POST /servers/{name}/approve` pins the current definitions (optionally only if they are the
ones reviewed: body `{"tools": {"name": "sha256", ...}}`), `DELETE /servers/{name}/pins` stops pinning. Every
change is stored with its audit entry in one transaction.

`POST /guardrails/check` runs the rules in force on a text, scoped as the guardrails stage scopes a call, and
answers the verdict: it is a read (the rules' own permission), so it changes nothing, is not a call of the request
log and records no finding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session
from starlette.responses import Response

from connectors.upstream import Upstream
from hub.doors.admin.api import PREFIX, Change, Conflict, Ctx, Op, actor, commit, json_response, off_loop, read_body
from hub.doors.admin.schema import ApproveIn, CheckIn
from hub.errors import BadRequest, Internal, NotFound
from hub.governance.rbac import AdminPrincipal
from hub.guardrails import GuardrailConfig, GuardrailConfigError
from hub.guardrails.pinning import PinCommit, PinMismatchError, ServerPins, ToolPins
from hub.guardrails.rules import GuardrailRules, check_references, public_form
from hub.guardrails.verdict import Scope

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


async def _check(ctx: Ctx, config: GuardrailConfig) -> None:
    """Refuse literal credentials, references and endpoints the operator did not allow, and a rule that does not
    build (building resolves the references, so it comes last)."""
    try:
        check_references(config)
    except ValueError as exc:
        raise BadRequest(f"invalid guardrail: {exc}") from None
    await ctx.remote.check_guardrail(config)
    try:
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
    await _check(ctx, body)
    change = Change("guardrail.create", "guardrail", body.name, None, public_form(body))
    await commit(ctx, who, lambda s: rules.store.save(body, s), lambda _none: change)
    await rules.apply()
    return json_response(_view(body, "api"), 201)


async def replace_guardrail(ctx: Ctx, who: AdminPrincipal, body: GuardrailConfig) -> Response:
    name = ctx.params["name"]
    if body.name != name:
        raise BadRequest("the body's name differs from the path's")
    before = await _stored(ctx, name)
    await _check(ctx, body)
    rules = _rules(ctx)
    change = Change("guardrail.update", "guardrail", name, public_form(before), public_form(body))
    await commit(ctx, who, lambda s: rules.store.save(body, s), lambda _none: change)
    await rules.apply()
    return json_response(_view(body, "api"))


async def delete_guardrail(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    before = await _stored(ctx, name)
    rules = _rules(ctx)

    def change(deleted: bool) -> Change:
        if not deleted:
            raise NotFound(f"no guardrail named '{name}'")
        return Change("guardrail.delete", "guardrail", name, public_form(before), None)

    await commit(ctx, who, lambda s: rules.store.delete(name, s), change)
    await rules.apply()
    return json_response({"deleted": name})


def check_scope(body: CheckIn) -> Scope:
    """The scope the guardrails stage would give a call like the one `body` describes."""
    door = body.door or ("mcp" if body.operation and not body.operation.startswith("llm.") else "llm")
    if body.operation is not None and (door == "llm") != body.operation.startswith("llm."):
        raise BadRequest(f"operation '{body.operation}' is not an operation of the {door} door")
    if body.server is not None and door != "mcp":
        raise BadRequest("server applies to the mcp door only")
    operation = body.operation or ("llm.chat" if door == "llm" else "mcp.tool")
    return Scope(body.direction, door, operation, key=body.key, team=body.team, server=body.server)


async def check_text(ctx: Ctx, who: AdminPrincipal, body: CheckIn) -> Response:
    """Run the engine in force on the text, as the stage would for the call (rules with `sampling` below 1 are
    sampled as on a call); `applied` names the rules whose filters match the scope, sampling aside."""
    scope = check_scope(body)
    engine = _rules(ctx).current()
    ran: list[str] = []
    decision, text, message, blocked_by, findings = "allow", body.text, "", [], []
    if engine is not None:
        ran = [g.cfg.name for g in engine.guards if g.applies(scope)]
        verdict = await engine.check(body.text, scope)
        decision, message, blocked_by = verdict.decision, verdict.message, list(verdict.blocked_by)
        text = verdict.payload if verdict.redacted and isinstance(verdict.payload, str) else body.text
        findings = [f.as_log() for f in verdict.findings]
    return json_response(
        {"decision": decision, "text": text, "message": message, "blocked_by": blocked_by, "findings": findings,
         "applied": ran, "scope": {"direction": scope.direction, "door": scope.door, "operation": scope.operation,
                                   "key": scope.key, "team": scope.team, "server": scope.server}}
    )  # fmt: skip


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
        await pins.approve(
            upstream.name, upstream.catalog.tools, actor(who), body.tools,
            commit=_pin_commit(ctx, who, "server.approve", upstream.name),
        )  # fmt: skip
    except PinMismatchError as exc:
        raise Conflict(str(exc)) from None
    return json_response(pins.status(upstream.name, upstream.catalog.tools))


async def unpin_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    upstream = _upstream(ctx)
    if upstream.config.pin:
        raise Conflict(f"server '{upstream.name}' has pin = true in its configuration; change it there")
    pins = _pins(ctx)
    if pins.pins(upstream.name) is None:
        raise NotFound(f"server '{upstream.name}' is not pinned")
    await pins.unpin(upstream.name, commit=_pin_commit(ctx, who, "server.unpin", upstream.name))
    return json_response({"server": upstream.name, "pinned": False})


def _pin_commit(ctx: Ctx, who: AdminPrincipal, action: str, server: str) -> PinCommit:
    """Stores a pin change with its audit entry (`action`, the pins before and after) in one transaction."""

    async def run(write: Callable[[Session], object], before: ServerPins | None, after: ServerPins | None) -> None:
        change = Change(action, "server", server, _summary(before), _summary(after))
        await commit(ctx, who, write, lambda _result: change)

    return run


_R = PREFIX
OPERATIONS: list[Op] = [
    Op("GET", f"{_R}/guardrails", "Guardrails in force (config file and API)", list_guardrails, "guardrails"),
    Op("POST", f"{_R}/guardrails", "Add a guardrail (in force at once)", create_guardrail, "guardrails", "create",
       GuardrailConfig, 201),
    Op("POST", f"{_R}/guardrails/check", "Try a text on the guardrails in force; nothing is logged or changed",
       check_text, "guardrails", "read", CheckIn),
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

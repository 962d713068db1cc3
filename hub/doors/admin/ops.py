"""Admin handlers for servers, roles, admin tokens, the audit log and OIDC login; and the route table."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import httpx2
import orjson
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hub.audit.chain import AuditEvent
from hub.audit.export import to_json, to_jsonl, to_syslog
from hub.audit.scrub import scrub
from hub.control import SERVER_CONFIG, config_dict
from hub.doors import oauth
from hub.doors.admin import entities as ent, guardrails as admin_guardrails
from hub.doors.admin.api import (
    PREFIX,
    AdminApi,
    Conflict,
    Ctx,
    HubSource,
    Op,
    actor,
    check_permissions,
    hash_token,
    json_response,
    off_loop,
    record,
    validation_message,
)
from hub.doors.admin.schema import AuthLoginIn, PurgeIn, RoleIn, RolePatch, TokenIn, openapi_document
from hub.errors import BadRequest, Forbidden, NotFound
from hub.governance.rbac import BUILTIN_ROLES, AdminPrincipal, map_groups
from hub.identity.oidc import SESSION_COOKIE, STATE_COOKIE, OidcError, OidcLogin
from hub.store.admin_tables import AdminTokenRow, RoleRow, now_utc
from hub.store.tables import DuplicateName

# -- servers -----------------------------------------------------------------------------------------------


async def list_servers(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    from hub.http import server_status

    rows = server_status(ctx.hub)
    for row in rows:
        stored = ctx.control.runtime_servers.get(row["name"])
        row["source"] = "api" if stored is not None else "config"
    return json_response({"data": rows})


async def get_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    from hub.http import server_status

    name = ctx.params["name"]
    for row in server_status(ctx.hub):
        if row["name"] == name:
            stored = ctx.control.runtime_servers.get(name)
            row["source"] = "api" if stored is not None else "config"
            if stored is not None:
                row["config"] = scrub(config_dict(stored))
            return json_response(row)
    raise NotFound(f"no server named '{name}'")


def _parse_server(data: dict[str, Any], name: str) -> dict[str, Any]:
    if data.get("name", name) != name:
        raise BadRequest("the body's name differs from the path's")
    try:
        config = SERVER_CONFIG.validate_python({**data, "name": name})
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None
    return config_dict(config)


async def create_server(ctx: Ctx, who: AdminPrincipal, body: dict[str, Any]) -> Response:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("invalid request: name: a server name is required")
    config = _parse_server(body, name)
    if name in ctx.hub.settings.servers or await off_loop(ctx.control.store.get_server, name) is not None:
        raise Conflict(f"a server named '{name}' exists already")
    try:
        await off_loop(ctx.control.store.create_server, name, config)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await ctx.control.apply_servers()
    await record(ctx, who, "server.create", "server", name, None, {"name": name, **config})
    return json_response({"name": name, "source": "api", "config": scrub(config)}, 201)


async def _stored_server(ctx: Ctx, name: str) -> dict[str, Any]:
    if name in ctx.hub.settings.servers:
        raise Conflict(f"server '{name}' is declared in the config file; change it there")
    row = await off_loop(ctx.control.store.get_server, name)
    if row is None:
        raise NotFound(f"no server named '{name}'")
    return orjson.loads(row.config)


async def replace_server(ctx: Ctx, who: AdminPrincipal, body: dict[str, Any]) -> Response:
    name = ctx.params["name"]
    config = _parse_server(body, name)
    before = await _stored_server(ctx, name)
    await off_loop(ctx.control.store.save_server, name, config)
    await ctx.control.apply_servers()
    await record(ctx, who, "server.update", "server", name, before, config)
    return json_response({"name": name, "source": "api", "config": scrub(config)})


async def delete_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    before = await _stored_server(ctx, name)
    await off_loop(ctx.control.store.delete_server, name)
    await ctx.control.apply_servers()
    await record(ctx, who, "server.delete", "server", name, before, None)
    return json_response({"deleted": name})


# -- roles -------------------------------------------------------------------------------------------------


def _role_view(row: RoleRow) -> dict[str, Any]:
    return {"name": row.name, "permissions": orjson.loads(row.permissions), "description": row.description,
            "builtin": False}  # fmt: skip


async def list_roles(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    builtin = [
        {"name": n, "permissions": list(p), "description": "", "builtin": True} for n, p in BUILTIN_ROLES.items()
    ]
    custom = [_role_view(r) for r in await off_loop(ctx.control.store.roles)]
    return json_response({"data": builtin + custom})


async def _role(ctx: Ctx, name: str) -> RoleRow:
    if name in BUILTIN_ROLES:
        raise Conflict(f"'{name}' is a built-in role and cannot be changed")
    row = await off_loop(ctx.control.store.get_role, name)
    if row is None:
        raise NotFound(f"no role named '{name}'")
    return row


async def get_role(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    if name in BUILTIN_ROLES:
        return json_response({"name": name, "permissions": list(BUILTIN_ROLES[name]), "builtin": True})
    return json_response(_role_view(await _role(ctx, name)))


async def create_role(ctx: Ctx, who: AdminPrincipal, body: RoleIn) -> Response:
    check_permissions(body.permissions)
    if body.name in BUILTIN_ROLES or await off_loop(ctx.control.store.get_role, body.name) is not None:
        raise Conflict(f"a role named '{body.name}' exists already")
    now = now_utc()
    row = RoleRow(name=body.name, permissions=orjson.dumps(body.permissions).decode(), description=body.description,
                  created_at=now, updated_at=now)  # fmt: skip
    try:
        await off_loop(ctx.control.store.create_role, row)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await record(ctx, who, "role.create", "role", row.name, None, _role_view(row))
    return json_response(_role_view(row), 201)


async def update_role(ctx: Ctx, who: AdminPrincipal, body: RolePatch) -> Response:
    row = await _role(ctx, ctx.params["name"])
    before = _role_view(row)
    new = row.model_copy(update={"updated_at": now_utc()})
    if body.permissions is not None:
        check_permissions(body.permissions)
        new.permissions = orjson.dumps(body.permissions).decode()
    if body.description is not None:
        new.description = body.description
    await off_loop(ctx.control.store.save_role, new)
    await record(ctx, who, "role.update", "role", row.name, before, _role_view(new))
    return json_response(_role_view(new))


async def delete_role(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _role(ctx, ctx.params["name"])
    await off_loop(ctx.control.store.delete_role, row.name)
    await record(ctx, who, "role.delete", "role", row.name, _role_view(row), None)
    return json_response({"deleted": row.name})


# -- admin tokens ------------------------------------------------------------------------------------------


def _token_view(row: AdminTokenRow) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "kind": row.kind, "subject": row.subject,
        "roles": orjson.loads(row.roles), "teams": orjson.loads(row.teams), "created_by": row.created_by,
        "created_at": row.created_at.isoformat(), "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked": row.revoked_at is not None,
    }  # fmt: skip


async def list_tokens(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    return json_response({"data": [_token_view(r) for r in await off_loop(ctx.control.store.tokens)]})


async def _new_token(
    ctx: Ctx, *, kind: str, name: str, subject: str, roles: list[str], teams: list[str], hours: float | None,
    created_by: str,
) -> tuple[str, AdminTokenRow]:  # fmt: skip
    secret = ("ahs-" if kind == "session" else "aht-") + secrets.token_urlsafe(32)
    now = now_utc()
    row = AdminTokenRow(
        id="tok_" + secrets.token_hex(8), name=name, token_hash=hash_token(secret), prefix=secret[:8], kind=kind,
        roles=orjson.dumps(roles).decode(), teams=orjson.dumps(teams).decode(), subject=subject,
        created_by=created_by, created_at=now, expires_at=now + timedelta(hours=hours) if hours else None,
    )  # fmt: skip
    await off_loop(ctx.control.store.add_token, row)
    return secret, row


async def create_token(ctx: Ctx, who: AdminPrincipal, body: TokenIn) -> Response:
    custom = {r.name for r in await off_loop(ctx.control.store.roles)}
    unknown = [r for r in body.roles if r.lower() not in BUILTIN_ROLES and r.lower() not in custom]
    if unknown:
        raise BadRequest(f"unknown roles {unknown}")
    hours = body.expires_days * 24 if body.expires_days else None
    secret, row = await _new_token(
        ctx, kind="token", name=body.name, subject=body.name, roles=[r.lower() for r in body.roles],
        teams=body.teams, hours=hours, created_by=actor(who),
    )  # fmt: skip
    await record(ctx, who, "token.create", "admin_token", row.id, None, _token_view(row))
    return json_response({**_token_view(row), "secret": secret}, 201)


async def revoke_token(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await off_loop(ctx.control.store.revoke_token, ctx.params["id"])
    if row is None:
        raise NotFound(f"no active admin token '{ctx.params['id']}'")
    await record(ctx, who, "token.revoke", "admin_token", row.id, None, {"revoked": True})
    return json_response({"id": row.id, "revoked": True})


# -- audit -------------------------------------------------------------------------------------------------


def _int_param(ctx: Ctx, name: str, default: int) -> int:
    raw = ctx.request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequest(f"query parameter '{name}' must be a non-negative integer")
    return int(raw)


async def list_audit(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    after, limit = _int_param(ctx, "after", 0), min(_int_param(ctx, "limit", 100), 1000)
    entries = await off_loop(lambda: ctx.control.audit.entries(after=after, limit=limit))
    return json_response({"data": [e.to_dict() for e in entries]})


async def verify_audit(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    result = await off_loop(ctx.control.audit.verify)
    return json_response(
        {"ok": result.ok, "checked": result.checked, "first_bad_seq": result.first_bad_seq, "reason": result.reason}
    )


async def export_audit(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    fmt = ctx.request.query_params.get("format", "jsonl")
    entries = await off_loop(ctx.control.audit.entries)
    if fmt == "json":
        body, media = to_json(entries), "application/json"
    elif fmt == "jsonl":
        body, media = to_jsonl(entries), "application/x-ndjson"
    elif fmt == "syslog":
        body, media = "".join(to_syslog(e) + "\n" for e in entries), "text/plain"
    else:
        raise BadRequest("format must be json, jsonl or syslog")
    await record(ctx, who, "audit.export", "audit", None, None, {"format": fmt, "entries": len(entries)})
    return Response(body, media_type=media)


async def audit_settings(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    section = ctx.hub.settings.audit
    head = await off_loop(ctx.control.audit.head)
    return json_response(
        {"retention_days": section.retention_days, "forward": section.forward.model_dump() if section.forward else None,
         "key_id": ctx.control.audit.keyring.active, "head_seq": head.seq}
    )  # fmt: skip


async def purge_audit(ctx: Ctx, who: AdminPrincipal, body: PurgeIn) -> Response:
    checkpoint = await ctx.control.audit.purge(body.retention_days, actor=actor(who))
    return json_response({"checkpoint": checkpoint.to_dict() if checkpoint else None})


# -- login -------------------------------------------------------------------------------------------------


class _Login:
    """OIDC login state shared by the two login routes (the discovery document is cached)."""

    metadata: dict[str, Any] | None = None

    @classmethod
    def client(cls, ctx: Ctx, http: httpx2.AsyncClient) -> OidcLogin:
        section = ctx.hub.settings.admin.oidc
        if section is None:
            raise NotFound("OIDC login is not configured ([admin.oidc])")
        keyring = ctx.control.audit.keyring
        key = hmac.new(keyring.secret(keyring.active) or b"", b"agenthub oidc state", hashlib.sha256).digest()
        login = OidcLogin(section, key, http)
        login._metadata = cls.metadata if cls.metadata and cls.metadata.get("issuer") == section.issuer else None
        return login


async def login(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        client = _Login.client(ctx, http)
        try:
            url, cookie = await client.start()
        except OidcError as exc:
            raise BadRequest(f"login is unavailable: {exc}") from None
        _Login.metadata = client._metadata
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(STATE_COOKIE, cookie, max_age=600, httponly=True, samesite="lax", path=f"{PREFIX}/auth")
    return response


async def callback(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    section = ctx.hub.settings.admin.oidc
    async with httpx2.AsyncClient(timeout=10) as http:
        client = _Login.client(ctx, http)
        try:
            identity = await client.finish(dict(ctx.request.query_params), ctx.request.cookies.get(STATE_COOKIE))
        except OidcError as exc:
            await record(ctx, "anonymous", "auth.login", "session", None, None, {"error": str(exc)}, "denied")
            raise BadRequest(f"login failed: {exc}") from None
    assert section is not None
    roles = map_groups(identity.groups, section.roles) or list(section.default_roles)
    teams = map_groups(identity.groups, section.teams)
    subject = identity.email or identity.subject
    info: dict[str, Any] = {"sub": identity.subject, "groups": list(identity.groups), "roles": roles, "teams": teams}
    if not roles:
        await record(ctx, f"oidc:{subject}", "auth.login", "session", None, None, info, "denied")
        raise Forbidden(f"'{subject}' has no admin role (groups {list(identity.groups)} map to none)")
    secret, row = await _new_token(
        ctx, kind="session", name=f"oidc:{subject}", subject=subject, roles=roles, teams=teams,
        hours=ctx.hub.settings.admin.session_hours, created_by="oidc",
    )  # fmt: skip
    await record(ctx, f"oidc:{subject}", "auth.login", "session", row.id, None, info)
    response = json_response({"token": secret, "subject": subject, "roles": roles, "teams": teams,
                              "expires_at": row.expires_at.isoformat() if row.expires_at else None})  # fmt: skip
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="strict", path="/api")
    response.delete_cookie(STATE_COOKIE, path=f"{PREFIX}/auth")
    return response


async def me(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    return json_response(
        {"subject": who.subject, "via": who.via, "roles": list(who.roles), "teams": sorted(who.teams),
         "permissions": [str(p) for p in who.permissions]}
    )  # fmt: skip


# -- the table ---------------------------------------------------------------------------------------------

_R = PREFIX
OPERATIONS: list[Op] = [
    Op("GET", f"{_R}/customers", "List customers", ent.list_customers, "customers"),
    Op("POST", f"{_R}/customers", "Create a customer", ent.create_customer, "customers", "create", ent.CustomerIn, 201),
    Op("GET", f"{_R}/customers/{{name}}", "Get a customer", ent.get_customer, "customers"),
    Op("PATCH", f"{_R}/customers/{{name}}", "Change a customer's budget or rate limit", ent.update_customer,
       "customers", "update", ent.CustomerPatch),
    Op("DELETE", f"{_R}/customers/{{name}}", "Delete an unused customer", ent.delete_customer, "customers", "delete"),
    Op("GET", f"{_R}/teams", "List teams", ent.list_teams, "teams"),
    Op("POST", f"{_R}/teams", "Create a team", ent.create_team, "teams", "create", ent.TeamIn, 201),
    Op("GET", f"{_R}/teams/{{name}}", "Get a team", ent.get_team, "teams"),
    Op("PATCH", f"{_R}/teams/{{name}}", "Change a team's customer, budget or rate limit", ent.update_team, "teams",
       "update", ent.TeamPatch),
    Op("DELETE", f"{_R}/teams/{{name}}", "Delete a team without active keys", ent.delete_team, "teams", "delete"),
    Op("GET", f"{_R}/keys", "List virtual keys (?include_revoked=true)", ent.list_keys, "keys"),
    Op("POST", f"{_R}/keys", "Create a virtual key; the secret is returned once", ent.create_key, "keys", "create",
       ent.KeyIn, 201),
    Op("GET", f"{_R}/keys/{{key}}", "Get a key by id or name", ent.get_key, "keys"),
    Op("PATCH", f"{_R}/keys/{{key}}", "Change a key's filters, limits or expiry", ent.update_key, "keys", "update",
       ent.KeyPatch),
    Op("DELETE", f"{_R}/keys/{{key}}", "Revoke a key (effective at once)", ent.revoke_key, "keys", "delete"),
    Op("GET", f"{_R}/usage/{{kind}}/{{name}}", "Usage of a key, team or customer", ent.get_usage, "usage"),
    Op("POST", f"{_R}/usage/{{kind}}/{{name}}/reset", "Zero usage in the current window", ent.reset_usage, "usage",
       "update", ent.UsageReset),
    Op("GET", f"{_R}/servers", "Upstream servers with health", list_servers, "servers"),
    Op("POST", f"{_R}/servers", "Add an upstream at run time", create_server, "servers", "create", "server", 201),
    Op("GET", f"{_R}/servers/{{name}}", "Get an upstream", get_server, "servers"),
    Op("PUT", f"{_R}/servers/{{name}}", "Replace a run-time upstream's configuration", replace_server, "servers",
       "update", "server"),
    Op("DELETE", f"{_R}/servers/{{name}}", "Remove a run-time upstream", delete_server, "servers", "delete"),
    Op("POST", f"{_R}/servers/{{name}}/auth/login", "Start an upstream OAuth authorization; returns the URL",
       oauth.login, "servers", "update", AuthLoginIn),
    Op("POST", f"{_R}/servers/{{name}}/auth/logout", "Delete a key's (or the hub's) upstream OAuth tokens",
       oauth.logout, "servers", "update", AuthLoginIn),
    *admin_guardrails.OPERATIONS,
    Op("GET", f"{_R}/roles", "Built-in and custom roles", list_roles, "roles"),
    Op("POST", f"{_R}/roles", "Create a custom role", create_role, "roles", "create", RoleIn, 201),
    Op("GET", f"{_R}/roles/{{name}}", "Get a role", get_role, "roles"),
    Op("PATCH", f"{_R}/roles/{{name}}", "Change a custom role", update_role, "roles", "update", RolePatch),
    Op("DELETE", f"{_R}/roles/{{name}}", "Delete a custom role", delete_role, "roles", "delete"),
    Op("GET", f"{_R}/tokens", "List admin tokens and sessions", list_tokens, "tokens"),
    Op("POST", f"{_R}/tokens", "Create an admin token; the secret is returned once", create_token, "tokens",
       "create", TokenIn, 201),
    Op("DELETE", f"{_R}/tokens/{{id}}", "Revoke an admin token or session", revoke_token, "tokens", "delete"),
    Op("GET", f"{_R}/audit", "Audit entries (?after=SEQ&limit=N)", list_audit, "audit"),
    Op("GET", f"{_R}/audit/verify", "Verify the audit chain", verify_audit, "audit"),
    Op("GET", f"{_R}/audit/export", "Export the audit log (?format=json|jsonl|syslog)", export_audit, "audit",
       "export"),
    Op("GET", f"{_R}/audit/settings", "Retention and forwarding settings", audit_settings, "audit"),
    Op("POST", f"{_R}/audit/purge", "Apply retention now (signed checkpoint)", purge_audit, "audit", "update",
       PurgeIn),
    Op("GET", f"{_R}/me", "Who am I", me),
    Op("GET", f"{_R}/auth/login", "Start an OIDC login (redirects to the provider)", login, public=True),
    Op("GET", f"{_R}/auth/callback", "Finish an OIDC login; returns a session token", callback, public=True),
]  # fmt: skip


def _document() -> dict[str, Any]:
    ops: list[tuple[str, str, str, str | None, int]] = []
    for op in OPERATIONS:
        body = op.body if isinstance(op.body, str) or op.body is None else op.body.__name__
        ops.append((op.method, op.path, op.summary, "Server" if body == "server" else body, op.status))
    ops.append(("GET", f"{_R}/openapi.json", "This document", None, 200))
    return openapi_document(ops)


def admin_routes(source: HubSource) -> list[Route]:
    """Every admin route (and `/api/v1/openapi.json`) for a hub that `source.hub` returns once running."""
    document = _document()

    async def openapi(_ctx: Ctx, _who: AdminPrincipal, _body: None) -> Response:
        return json_response(document)

    ops = [*OPERATIONS, Op("GET", f"{_R}/openapi.json", "This document", openapi, public=True)]
    return AdminApi(source, ops).routes()


def audit_cli_event(
    actor_name: str, action: str, resource_type: str, resource_id: str | None, after: Any
) -> AuditEvent:
    """An audit event for a change made through the CLI (no source address)."""
    return AuditEvent(actor_name, action, resource_type, resource_id, None, after, None, "agenthub-cli")

"""Admin handlers for servers, roles, admin tokens, the audit log and OIDC login; and the route table.

A run-time server's endpoints and secret references pass the operator's allow-lists (`allowlists`), and its
configuration is shown and audited with secrets redacted. A role or token carries only permissions its creator
holds itself. Each change is stored with its audit entry in one transaction, then applied.
"""

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

from connectors.config import HttpConfig, SseConfig, StdioConfig, name_key
from hub.audit.chain import AuditEvent
from hub.audit.export import to_json, to_jsonl, to_syslog
from hub.audit.scrub import scrub
from hub.control import SERVER_CONFIG, config_dict
from hub.doors import oauth
from hub.doors.admin import (
    entities as ent,
    guardrails as admin_guardrails,
    logs as admin_logs,
    models as admin_models,
    users as admin_users,
    virtual as admin_virtual,
)
from hub.doors.admin.api import (
    PREFIX,
    AdminApi,
    Change,
    Conflict,
    Ctx,
    HubSource,
    Op,
    actor,
    check_permissions,
    commit,
    hash_token,
    json_response,
    off_loop,
    record,
    validation_message,
)
from hub.doors.admin.schema import AuthLoginIn, PurgeIn, RoleIn, RolePatch, TokenIn, openapi_document
from hub.errors import BadRequest, Forbidden, NotFound
from hub.governance.rbac import BUILTIN_ROLES, AdminPrincipal, map_groups, parse_permissions, resolve_roles
from hub.identity.oidc import SESSION_COOKIE, STATE_COOKIE, OidcError, OidcLogin
from hub.store.admin_tables import AdminTokenRow, RoleRow, now_utc
from hub.store.tables import DuplicateName

# -- servers -----------------------------------------------------------------------------------------------


async def list_servers(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    rows = ctx.hub.server_status()
    for row in rows:
        stored = ctx.control.runtime_servers.get(row["name"])
        row["source"] = "api" if stored is not None else "config"
    return json_response({"data": rows})


async def get_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    for row in ctx.hub.server_status():
        if row["name"] == name:
            stored = ctx.control.runtime_servers.get(name)
            row["source"] = "api" if stored is not None else "config"
            if stored is not None:
                row["config"] = scrub(config_dict(stored))
            return json_response(row)
    raise NotFound(f"no server named '{name}'")


def _parse_server(data: dict[str, Any], name: str) -> StdioConfig | SseConfig | HttpConfig:
    if data.get("name", name) != name:
        raise BadRequest("the body's name differs from the path's")
    try:
        return SERVER_CONFIG.validate_python({**data, "name": name})
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None


async def create_server(ctx: Ctx, who: AdminPrincipal, body: dict[str, Any]) -> Response:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("invalid request: name: a server name is required")
    parsed = _parse_server(body, name)
    await ctx.remote.check_server(parsed)
    config = config_dict(parsed)
    store = ctx.control.store
    if name in ctx.hub.settings.servers or await off_loop(store.get_server, name) is not None:
        raise Conflict(f"a server named '{name}' exists already")
    taken = [*ctx.hub.settings.servers, *(row.name for row in await off_loop(store.servers))]
    clash = next((other for other in taken if other != name and name_key(other) == name_key(name)), None)
    if clash is not None:
        raise Conflict(
            f"server '{name}' collides with '{clash}': names must differ in more than case or '-' against '_'"
        )
    change = Change("server.create", "server", name, None, {"name": name, **config})
    try:
        await commit(ctx, who, lambda s: store.create_server(name, config, s), lambda _none: change)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await ctx.control.apply_servers()
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
    parsed = _parse_server(body, name)
    before = await _stored_server(ctx, name)
    await ctx.remote.check_server(parsed)
    config, store = config_dict(parsed), ctx.control.store
    change = Change("server.update", "server", name, before, config)
    await commit(ctx, who, lambda s: store.save_server(name, config, s), lambda _none: change)
    await ctx.control.apply_servers()
    return json_response({"name": name, "source": "api", "config": scrub(config)})


async def delete_server(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    """Remove a run-time server: stored with its audit entry first, then taken out of the running hub (calls in
    flight to it fail as upstream errors)."""
    name = ctx.params["name"]
    before, store = await _stored_server(ctx, name), ctx.control.store

    def change(deleted: bool) -> Change:
        if not deleted:
            raise NotFound(f"no server named '{name}'")
        return Change("server.delete", "server", name, before, None)

    await commit(ctx, who, lambda s: store.delete_server(name, s), change)
    await ctx.control.apply_servers()
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


def _check_grant(who: AdminPrincipal, texts: list[str], what: str) -> None:
    """Refuse bad permission strings, and permissions the caller does not hold itself (for its own teams)."""
    check_permissions(texts)
    who.require_covers(parse_permissions(texts), who.teams, what)


async def create_role(ctx: Ctx, who: AdminPrincipal, body: RoleIn) -> Response:
    _check_grant(who, body.permissions, f"role '{body.name}'")
    store = ctx.control.store
    if body.name in BUILTIN_ROLES or await off_loop(store.get_role, body.name) is not None:
        raise Conflict(f"a role named '{body.name}' exists already")
    now = now_utc()
    row = RoleRow(name=body.name, permissions=orjson.dumps(body.permissions).decode(), description=body.description,
                  created_at=now, updated_at=now)  # fmt: skip
    change = Change("role.create", "role", row.name, None, _role_view(row))
    try:
        await commit(ctx, who, lambda s: store.create_role(row, s), lambda _none: change)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    return json_response(_role_view(row), 201)


async def update_role(ctx: Ctx, who: AdminPrincipal, body: RolePatch) -> Response:
    row = await _role(ctx, ctx.params["name"])
    new = row.model_copy(update={"updated_at": now_utc()})
    if body.permissions is not None:
        _check_grant(who, body.permissions, f"role '{row.name}'")
        new.permissions = orjson.dumps(body.permissions).decode()
    if body.description is not None:
        new.description = body.description
    change, store = Change("role.update", "role", row.name, _role_view(row), _role_view(new)), ctx.control.store
    await commit(ctx, who, lambda s: store.save_role(new, s), lambda _none: change)
    return json_response(_role_view(new))


async def delete_role(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _role(ctx, ctx.params["name"])
    change, store = Change("role.delete", "role", row.name, _role_view(row), None), ctx.control.store
    await commit(ctx, who, lambda s: store.delete_role(row.name, s), lambda _none: change)
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


def _new_token(
    *, kind: str, name: str, subject: str, roles: list[str], teams: list[str], hours: float | None, created_by: str,
) -> tuple[str, AdminTokenRow]:  # fmt: skip
    """A new admin token or session and its secret (not stored yet)."""
    secret = ("ahs-" if kind == "session" else "aht-") + secrets.token_urlsafe(32)
    now = now_utc()
    row = AdminTokenRow(
        id="tok_" + secrets.token_hex(8), name=name, token_hash=hash_token(secret), prefix=secret[:8], kind=kind,
        roles=orjson.dumps(roles).decode(), teams=orjson.dumps(teams).decode(), subject=subject,
        created_by=created_by, created_at=now, expires_at=now + timedelta(hours=hours) if hours else None,
    )  # fmt: skip
    return secret, row


async def create_token(ctx: Ctx, who: AdminPrincipal, body: TokenIn) -> Response:
    store = ctx.control.store
    custom = {r.name: orjson.loads(r.permissions) for r in await off_loop(store.roles)}
    unknown = [r for r in body.roles if r.lower() not in BUILTIN_ROLES and r.lower() not in custom]
    if unknown:
        raise BadRequest(f"unknown roles {unknown}")
    roles, permissions = resolve_roles(body.roles, custom)
    who.require_covers(permissions, body.teams, f"token '{body.name}'")
    hours = body.expires_days * 24 if body.expires_days else None
    secret, row = _new_token(
        kind="token", name=body.name, subject=body.name, roles=list(roles), teams=body.teams, hours=hours,
        created_by=actor(who),
    )  # fmt: skip
    change = Change("token.create", "admin_token", row.id, None, _token_view(row))
    await commit(ctx, who, lambda s: store.add_token(row, s), lambda _none: change)
    return json_response({**_token_view(row), "secret": secret}, 201)


async def revoke_token(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    token_id, store = ctx.params["id"], ctx.control.store

    def change(row: AdminTokenRow | None) -> Change:
        if row is None:
            raise NotFound(f"no active admin token '{token_id}'")
        return Change("token.revoke", "admin_token", row.id, None, {"revoked": True})

    await commit(ctx, who, lambda s: store.revoke_token(token_id, s), change)
    return json_response({"id": token_id, "revoked": True})


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
    checkpoint = await ctx.control.audit.purge(
        body.retention_days, actor=actor(who), source_ip=ctx.source_ip, user_agent=ctx.user_agent
    )
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
    secret, row = _new_token(
        kind="session", name=f"oidc:{subject}", subject=subject, roles=roles, teams=teams,
        hours=ctx.hub.settings.admin.session_hours, created_by="oidc",
    )  # fmt: skip
    change, store = Change("auth.login", "session", row.id, None, info), ctx.control.store
    await commit(ctx, f"oidc:{subject}", lambda s: store.add_token(row, s), lambda _none: change)
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
    Op("GET", f"{_R}/teams", "List teams", ent.list_teams, "teams", team_scoped=True),
    Op("POST", f"{_R}/teams", "Create a team", ent.create_team, "teams", "create", ent.TeamIn, 201, team_scoped=True),
    Op("GET", f"{_R}/teams/{{name}}", "Get a team", ent.get_team, "teams", team_scoped=True),
    Op("PATCH", f"{_R}/teams/{{name}}", "Change a team's customer, budget or rate limit", ent.update_team, "teams",
       "update", ent.TeamPatch, team_scoped=True),
    Op("DELETE", f"{_R}/teams/{{name}}", "Delete a team without active keys", ent.delete_team, "teams", "delete",
       team_scoped=True),
    Op("GET", f"{_R}/keys", "List virtual keys (?include_revoked=true)", ent.list_keys, "keys", team_scoped=True),
    Op("POST", f"{_R}/keys", "Create a virtual key; the secret is returned once", ent.create_key, "keys", "create",
       ent.KeyIn, 201, team_scoped=True),
    Op("GET", f"{_R}/keys/{{key}}", "Get a key by id or name", ent.get_key, "keys", team_scoped=True),
    Op("PATCH", f"{_R}/keys/{{key}}", "Change a key's filters, limits or expiry", ent.update_key, "keys", "update",
       ent.KeyPatch, team_scoped=True),
    Op("DELETE", f"{_R}/keys/{{key}}", "Revoke a key (effective at once)", ent.revoke_key, "keys", "delete",
       team_scoped=True),
    Op("GET", f"{_R}/usage/{{kind}}/{{name}}", "Usage of a key, team or customer", ent.get_usage, "usage",
       team_scoped=True),
    Op("POST", f"{_R}/usage/{{kind}}/{{name}}/reset", "Zero usage in the current window", ent.reset_usage, "usage",
       "update", ent.UsageReset, team_scoped=True),
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
    *admin_models.OPERATIONS,
    *admin_virtual.OPERATIONS,
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
    *admin_logs.OPERATIONS,
    *admin_users.OPERATIONS,
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

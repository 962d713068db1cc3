"""The admin API under `/api/v1`: authentication, RBAC, strict bodies, audit of every change and refusal.

Callers present `Authorization: Bearer <token>` (or the `agenthub_admin` cookie set by an OIDC login): the
bootstrap token from `AGENTHUB_ADMIN_TOKEN` (role admin), an admin token created through the API (`aht-...`),
or an OIDC session (`ahs-...`). Every route names the permission it needs, and the caller's grant must reach
the target: targets outside any team (customers, servers, pins, roles, tokens, audit, guardrails) need an
unscoped grant, which dispatch checks before the handler runs; the handlers of team-owned targets (teams, keys,
usage; `Op.team_scoped`) check the target's team themselves and their lists show only what the caller may
read. A change and its audit entry are one database transaction (`commit`). Errors use the OpenAI envelope; a
refused or failed request changes nothing and is audited too. The handlers live in `entities`, `guardrails` and
`ops` beside this module; the route table in `ops` also produces `/api/v1/openapi.json`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, TypeVarTuple, Unpack

import anyio
import orjson
from pydantic import BaseModel, ValidationError
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.audit.chain import AuditEvent
from hub.audit.scrub import JSONValue
from hub.control import ControlPlane
from hub.doors.admin.allowlists import RemotePolicy
from hub.doors.host import AdminHost
from hub.doors.web import error_response
from hub.errors import BadRequest, Forbidden, HubError, Internal, PayloadTooLarge, Unauthenticated, Wire
from hub.governance.keys import bearer_token, constant_time_equal
from hub.governance.rbac import AdminPrincipal, parse_permissions, resolve_roles
from hub.identity.oidc import SESSION_COOKIE
from hub.paths import ADMIN_PREFIX
from hub.store.changes import record_change, recorded

logger = logging.getLogger(__name__)

PREFIX = ADMIN_PREFIX
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Conflict(BadRequest):
    """The change conflicts with what exists (a name in use, an entity still referenced)."""

    wire = Wire(409, "invalid_request_error", -32602)


class HubSource(Protocol):
    @property
    def hub(self) -> AdminHost: ...


@dataclass
class Ctx:
    """One admin request: the running hub, its control plane, path parameters, client address and agent."""

    request: Request
    hub: AdminHost
    control: ControlPlane
    resource: str | None = None
    """The kind of entity the operation acts on (`Op.resource`): what a change it makes records."""

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.path_params)

    @property
    def source_ip(self) -> str | None:
        return self.request.client.host if self.request.client else None

    @property
    def user_agent(self) -> str | None:
        return self.request.headers.get("user-agent")

    @property
    def remote(self) -> RemotePolicy:
        """The operator's allow-lists for secret references and endpoints given through the API."""
        settings = self.hub.settings
        return RemotePolicy(settings.admin, insecure_loopback=settings.hub.insecure_loopback)


Handler = Callable[[Ctx, AdminPrincipal, Any], Awaitable[Response]]


@dataclass(frozen=True)
class Op:
    """One admin operation: route, permission, body model, handler."""

    method: str
    path: str
    summary: str
    handler: Handler | None
    resource: str | None = None
    action: str = "read"
    body: type[BaseModel] | str | None = None
    status: int = 200
    public: bool = False
    team_scoped: bool = False
    """The targets may belong to a team: the handler checks the target's team (`AdminPrincipal.require`) and
    filters lists. Otherwise the targets are outside any team and dispatch requires an unscoped grant."""


def actor(principal: AdminPrincipal) -> str:
    return principal.subject if principal.via == "bootstrap" else f"{principal.via}:{principal.subject}"


@dataclass(frozen=True)
class Change:
    """What one admin change did, as its audit entry tells it."""

    action: str
    resource_type: str
    resource_id: str | None
    before: JSONValue = None
    after: JSONValue = None


def audit_event(ctx: Ctx, who: AdminPrincipal | str, change: Change, outcome: str = "success") -> AuditEvent:
    """The audit event of `change` made by `who` in this request."""
    name = who if isinstance(who, str) else actor(who)
    return AuditEvent(
        name, change.action, change.resource_type, change.resource_id, change.before, change.after, ctx.source_ip,
        ctx.user_agent, outcome,
    )  # fmt: skip


async def commit(
    ctx: Ctx, who: AdminPrincipal | str, write: Callable[[Session], T], change: Callable[[T], Change]
) -> T:
    """Make a change and write its audit entry in one database transaction; returns what `write` returned.

    `write(session)` runs in a worker thread and writes through the session without committing; `change(result)`
    describes it for the audit entry. If either fails, neither is stored. The transaction also appends to the
    change log, so other processes follow: the kind of the version the write moved, else the operation's resource.
    """

    def write_and_record(s: Session) -> T:
        result = write(s)
        s.flush()  # a moved version records its kind on flush
        if not recorded(s):
            record_change(s, ctx.resource or "admin")
        return result

    return await ctx.control.audit.transact(write_and_record, lambda result: audit_event(ctx, who, change(result)))


async def record(
    ctx: Ctx,
    who: AdminPrincipal | str,
    action: str,
    resource_type: str,
    resource_id: str | None,
    before: JSONValue = None,
    after: JSONValue = None,
    outcome: str = "success",
) -> None:
    """Append one audit entry for this request, in a transaction of its own (a change that is not in the database,
    or a refusal; a change of the database is written with its entry by `commit`). A successful change (any method
    but GET) also appends to the change log, in the same transaction."""
    event = audit_event(ctx, who, Change(action, resource_type, resource_id, before, after), outcome)
    if outcome != "success" or ctx.request.method in ("GET", "HEAD"):
        await ctx.control.audit.append(event)
        return
    kind = ctx.resource or resource_type
    await ctx.control.audit.transact(lambda s: record_change(s, kind), lambda _none: event)


ANONYMOUS = AdminPrincipal("anonymous", (), via="none")
"""The caller of a public route (no permissions)."""


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _bootstrap() -> AdminPrincipal:
    roles, perms = resolve_roles(["admin"], {})
    return AdminPrincipal("bootstrap", roles, permissions=perms, via="bootstrap")


def authenticate_sync(control: ControlPlane, presented: str | None) -> AdminPrincipal:
    """The principal for a presented admin credential (blocking: reads the tables).

    Raises:
        Unauthenticated: missing, unknown, revoked or expired.
    """
    if not presented:
        raise Unauthenticated("an admin token is required (Authorization: Bearer ...)")
    bootstrap = os.environ.get("AGENTHUB_ADMIN_TOKEN")
    if bootstrap and constant_time_equal(bootstrap, presented):
        return _bootstrap()
    row = control.store.token_by_hash(hash_token(presented))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the admin token is unknown or revoked")
    expires = row.expires_at
    if expires is not None and (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) <= datetime.now(UTC):
        raise Unauthenticated("the admin token or session has expired")
    custom = {r.name: orjson.loads(r.permissions) for r in control.store.roles()}
    roles, perms = resolve_roles(orjson.loads(row.roles), custom)
    via = "oidc" if row.kind == "session" else "token"
    return AdminPrincipal(row.subject, roles, frozenset(orjson.loads(row.teams)), perms, via, row.id)


async def read_body(request: Request, model: type[BaseModel] | str, limit: int) -> Any:
    """The JSON body validated by `model` (a model class, or `"server"` for a raw object).

    Raises:
        PayloadTooLarge: over `limit` bytes.
        BadRequest: not JSON, or not valid for the model (the message names each field).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    if isinstance(model, str):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "invalid request: " + "; ".join(parts)


class AdminApi:
    """Builds the Starlette routes for a table of operations."""

    def __init__(self, source: HubSource, ops: list[Op]) -> None:
        self.source = source
        self.ops = ops

    def routes(self) -> list[Route]:
        by_path: dict[str, list[Op]] = {}
        for op in self.ops:
            by_path.setdefault(op.path, []).append(op)
        return [Route(path, self._endpoint(ops), methods=[o.method for o in ops]) for path, ops in by_path.items()]

    def _endpoint(self, ops: list[Op]) -> Callable[[Request], Awaitable[Response]]:
        table = {op.method: op for op in ops}

        async def endpoint(request: Request) -> Response:
            op = table.get(request.method) or table["GET"]  # HEAD is answered as GET
            return await self.dispatch(request, op)

        return endpoint

    async def dispatch(self, request: Request, op: Op) -> Response:
        hub = self.source.hub
        control = hub.control
        if control is None or op.handler is None:
            return error_response(Internal("the admin API is not ready"))
        ctx = Ctx(request, hub, control, op.resource)
        principal: AdminPrincipal | None = None
        try:
            if not op.public:
                presented = bearer_token(request.headers.get("authorization")) or request.cookies.get(SESSION_COOKIE)
                principal = await off_loop(authenticate_sync, control, presented)
                if op.resource is not None:
                    if not op.team_scoped:
                        principal.require(op.resource, op.action, None)
                    elif not principal.may_any(op.resource, op.action):
                        raise Forbidden(f"'{principal.subject}' may not {op.action} {op.resource}")
            body = None
            if op.body is not None:
                body = await read_body(request, op.body, hub.settings.admin.max_body_bytes)
            return await op.handler(ctx, principal or ANONYMOUS, body)
        except HubError as exc:
            await self._record_refusal(ctx, op, principal, exc)
            return error_response(exc)
        except Exception:
            logger.exception("admin request %s %s failed", op.method, request.url.path)
            failed = Internal("the admin request failed; nothing was changed")
            await self._record_refusal(ctx, op, principal, failed)
            return error_response(failed)

    async def _record_refusal(self, ctx: Ctx, op: Op, principal: AdminPrincipal | None, exc: HubError) -> None:
        """Refused attempts are audited: authentication and permission failures always, failed changes too."""
        if isinstance(exc, Unauthenticated | Forbidden):
            outcome = "denied"
        elif op.method in ("GET", "HEAD"):
            return
        else:
            outcome = "failure"
        who = actor(principal) if principal is not None else "anonymous"
        resource_id = next(iter(ctx.params.values()), None)
        after: JSONValue = {"method": op.method, "path": ctx.request.url.path, "error": exc.message}
        try:
            await record(
                ctx, who, f"{op.resource or 'admin'}.{op.action}", op.resource or "admin", resource_id, None, after,
                outcome,
            )  # fmt: skip
        except Exception:
            logger.exception("the audit entry of a refused admin request could not be written")


async def off_loop(func: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run a blocking store call in a worker thread."""
    return await anyio.to_thread.run_sync(func, *args)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (datetimes as RFC 3339)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def check_permissions(texts: list[str]) -> None:
    """Raise `BadRequest` unless every permission string parses."""
    try:
        parse_permissions(texts)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None

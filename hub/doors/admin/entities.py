"""Admin handlers for customers, teams, virtual keys and usage; each change is applied at once and audited."""

from __future__ import annotations

import dataclasses
import functools
import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from hub.audit.scrub import JSONValue
from hub.control import limits_json
from hub.doors.admin.api import Conflict, Ctx, json_response, off_loop, record
from hub.doors.admin.schema import CustomerIn, CustomerPatch, KeyIn, KeyPatch, TeamIn, TeamPatch, UsageReset
from hub.errors import BadRequest, NotFound
from hub.governance import EntityKind, EntityRef, Metric, UnknownSubject
from hub.governance.keys import KeyRing, new_secret
from hub.governance.rbac import AdminPrincipal
from hub.store.admin_tables import CustomerRow, TeamRow, loads_opt, now_utc
from hub.store.sql import DuplicateName
from hub.store.tables import KeyRow


def entity_view(row: CustomerRow | TeamRow) -> dict[str, Any]:
    view: dict[str, Any] = {"name": row.name}
    if isinstance(row, TeamRow):
        view["customer"] = row.customer
    view.update(
        budget=loads_opt(row.budget), rate_limit=loads_opt(row.rate_limit), source=row.source,
        created_at=row.created_at.isoformat(), updated_at=row.updated_at.isoformat(),
    )  # fmt: skip
    return view


def key_view(row: KeyRow) -> dict[str, Any]:
    """A key as the API shows it: identity, prefix and policy, never the secret or its hash."""
    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "source": row.source,
        "created_at": row.created_at.isoformat(), "expires_at": _iso(row.expires_at),
        "revoked": row.revoked_at is not None, **json.loads(row.policy),
    }  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _aware(value: datetime | None) -> datetime | None:
    """A datetime with a time zone (UTC assumed when none is given)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- customers and teams -----------------------------------------------------------------------------------


async def list_customers(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    rows = await off_loop(ctx.control.store.customers)
    return json_response({"data": [entity_view(r) for r in rows]})


async def get_customer(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    return json_response(entity_view(await _customer(ctx, ctx.params["name"])))


async def _customer(ctx: Ctx, name: str) -> CustomerRow:
    row = await off_loop(ctx.control.store.get_customer, name)
    if row is None:
        raise NotFound(f"no customer named '{name}'")
    return row


async def _team(ctx: Ctx, name: str) -> TeamRow:
    row = await off_loop(ctx.control.store.get_team, name)
    if row is None:
        raise NotFound(f"no team named '{name}'")
    return row


async def _check_refs(ctx: Ctx, team: str | None = None, customer: str | None = None) -> None:
    if team is not None and await off_loop(ctx.control.store.get_team, team) is None:
        raise BadRequest(f"unknown team '{team}'")
    if customer is not None and await off_loop(ctx.control.store.get_customer, customer) is None:
        raise BadRequest(f"unknown customer '{customer}'")


async def _save(ctx: Ctx, row: CustomerRow | TeamRow) -> None:
    await off_loop(ctx.control.store.save, row)
    await ctx.control.apply_governance()


async def _create(ctx: Ctx, row: CustomerRow | TeamRow) -> None:
    """Store a new customer or team; a name another writer took since the pre-check is the same 409."""
    try:
        await off_loop(ctx.control.store.create, row)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await ctx.control.apply_governance()


async def create_customer(ctx: Ctx, who: AdminPrincipal, body: CustomerIn) -> Response:
    if await off_loop(ctx.control.store.get_customer, body.name) is not None:
        raise Conflict(f"a customer named '{body.name}' exists already")
    now = now_utc()
    row = CustomerRow(
        name=body.name, budget=limits_json(body.budget), rate_limit=limits_json(body.rate_limit),
        created_at=now, updated_at=now,
    )  # fmt: skip
    await _create(ctx, row)
    await record(ctx, who, "customer.create", "customer", row.name, None, entity_view(row))
    return json_response(entity_view(row), 201)


async def update_customer(ctx: Ctx, who: AdminPrincipal, body: CustomerPatch) -> Response:
    row = await _customer(ctx, ctx.params["name"])
    before = entity_view(row)
    new = row.model_copy(update={"updated_at": now_utc()})
    if "budget" in body.model_fields_set:
        new.budget = limits_json(body.budget)
    if "rate_limit" in body.model_fields_set:
        new.rate_limit = limits_json(body.rate_limit)
    await _save(ctx, new)
    await record(ctx, who, "customer.update", "customer", row.name, before, entity_view(new))
    return json_response(entity_view(new))


async def delete_customer(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _customer(ctx, ctx.params["name"])
    teams = [t.name for t in await off_loop(ctx.control.store.teams) if t.customer == row.name]
    keys = [k.name for k in await off_loop(ctx.hub.store.list_keys) if json.loads(k.policy).get("customer") == row.name]
    if teams or keys:
        raise Conflict(f"customer '{row.name}' is still used by teams {teams} and keys {keys}")
    await off_loop(ctx.control.store.delete_entity, CustomerRow, row.name)
    await ctx.control.apply_governance()
    await record(ctx, who, "customer.delete", "customer", row.name, entity_view(row), None)
    return json_response({"deleted": row.name})


async def list_teams(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    rows = await off_loop(ctx.control.store.teams)
    return json_response({"data": [entity_view(r) for r in rows]})


async def get_team(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    return json_response(entity_view(await _team(ctx, ctx.params["name"])))


async def create_team(ctx: Ctx, who: AdminPrincipal, body: TeamIn) -> Response:
    if await off_loop(ctx.control.store.get_team, body.name) is not None:
        raise Conflict(f"a team named '{body.name}' exists already")
    await _check_refs(ctx, customer=body.customer)
    now = now_utc()
    row = TeamRow(
        name=body.name, customer=body.customer, budget=limits_json(body.budget),
        rate_limit=limits_json(body.rate_limit), created_at=now, updated_at=now,
    )  # fmt: skip
    await _create(ctx, row)
    await record(ctx, who, "team.create", "team", row.name, None, entity_view(row))
    return json_response(entity_view(row), 201)


async def update_team(ctx: Ctx, who: AdminPrincipal, body: TeamPatch) -> Response:
    row = await _team(ctx, ctx.params["name"])
    before = entity_view(row)
    new = row.model_copy(update={"updated_at": now_utc()})
    fields = body.model_fields_set
    if "customer" in fields:
        await _check_refs(ctx, customer=body.customer)
        new.customer = body.customer
    if "budget" in fields:
        new.budget = limits_json(body.budget)
    if "rate_limit" in fields:
        new.rate_limit = limits_json(body.rate_limit)
    await _save(ctx, new)
    await record(ctx, who, "team.update", "team", row.name, before, entity_view(new))
    return json_response(entity_view(new))


async def delete_team(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _team(ctx, ctx.params["name"])
    keys = [k.name for k in await off_loop(ctx.hub.store.list_keys) if json.loads(k.policy).get("team") == row.name]
    if keys:
        raise Conflict(f"team '{row.name}' still has active keys {keys}")
    await off_loop(ctx.control.store.delete_entity, TeamRow, row.name)
    await ctx.control.apply_governance()
    await record(ctx, who, "team.delete", "team", row.name, entity_view(row), None)
    return json_response({"deleted": row.name})


# -- keys --------------------------------------------------------------------------------------------------


async def _key(ctx: Ctx, name_or_id: str) -> KeyRow:
    row = await off_loop(ctx.hub.store.get_key, name_or_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active key '{name_or_id}'")
    return row


async def reload_keys(ctx: Ctx) -> None:
    """Read the keys off the loop, then install them on it (the limiter is only touched from the loop)."""
    hub = ctx.hub
    await ctx.control.apply_governance()  # a team made through another replica may be newer than our limiter
    version = await off_loop(hub.store.keys_version)
    ring = KeyRing(await off_loop(hub.store.active_keys))
    hub._install_keys(ring)
    hub._keys_version = version


def _team_of(row: KeyRow) -> str | None:
    return json.loads(row.policy).get("team")


async def list_keys(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    include = ctx.request.query_params.get("include_revoked") in ("1", "true")
    rows = await off_loop(functools.partial(ctx.hub.store.list_keys, include_revoked=include))
    visible = [key_view(r) for r in rows if who.allowed("keys", "read", _team_of(r))]
    return json_response({"data": visible})


async def get_key(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _key(ctx, ctx.params["key"])
    who.require("keys", "read", _team_of(row))
    return json_response(key_view(row))


async def create_key(ctx: Ctx, who: AdminPrincipal, body: KeyIn) -> Response:
    who.require("keys", "create", body.team)
    await _check_refs(ctx, body.team, body.customer)
    policy = body.model_dump(mode="json", exclude={"name", "expires_at"}, exclude_none=True)
    secret = new_secret()
    create = functools.partial(
        ctx.hub.store.create_key, body.name, secret, policy, source="api", expires_at=_aware(body.expires_at)
    )
    try:
        row = await off_loop(create)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await reload_keys(ctx)
    view = key_view(row)
    await record(ctx, who, "key.create", "key", row.id, None, view)
    return json_response({**view, "secret": secret}, 201)


async def update_key(ctx: Ctx, who: AdminPrincipal, body: KeyPatch) -> Response:
    row = await _key(ctx, ctx.params["key"])
    policy: dict[str, Any] = json.loads(row.policy)
    who.require("keys", "update", policy.get("team"))
    changes = body.model_dump(mode="json", exclude_unset=True)
    expires = _aware(body.expires_at) if "expires_at" in changes else row.expires_at
    changes.pop("expires_at", None)
    if "team" in changes:
        who.require("keys", "update", changes["team"])
    await _check_refs(ctx, changes.get("team"), changes.get("customer"))
    policy.update(changes)
    policy = {k: v for k, v in policy.items() if v is not None}
    updated = await off_loop(ctx.hub.store.update_key, row.id, policy, expires)
    if updated is None:
        raise NotFound(f"no active key '{ctx.params['key']}'")
    await reload_keys(ctx)
    await record(ctx, who, "key.update", "key", row.id, key_view(row), key_view(updated))
    return json_response(key_view(updated))


async def revoke_key(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _key(ctx, ctx.params["key"])
    who.require("keys", "delete", _team_of(row))
    if not await off_loop(ctx.hub.store.revoke_key, row.id):
        raise NotFound(f"no active key '{ctx.params['key']}'")
    await reload_keys(ctx)
    await record(ctx, who, "key.revoke", "key", row.id, key_view(row), {"revoked": True})
    return json_response({"id": row.id, "name": row.name, "revoked": True})


# -- usage -------------------------------------------------------------------------------------------------


async def _entity(ctx: Ctx) -> tuple[EntityRef, str | None]:
    kind, name = ctx.params["kind"], ctx.params["name"]
    if kind == "key":
        row = await _key(ctx, name)
        return EntityRef(EntityKind.KEY, row.id), _team_of(row)
    if kind == "team":
        return EntityRef(EntityKind.TEAM, (await _team(ctx, name)).name), name
    if kind == "customer":
        return EntityRef(EntityKind.CUSTOMER, (await _customer(ctx, name)).name), None
    raise NotFound(f"unknown entity kind '{kind}' (key, team or customer)")


async def _snapshots(ctx: Ctx, entity: EntityRef) -> list[dict[str, Any]]:
    limiter = ctx.hub.limiter
    if limiter is None:
        return []
    try:
        return [dataclasses.asdict(s) for s in await limiter.usage(entity)]
    except UnknownSubject:
        return []


async def get_usage(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    entity, team = await _entity(ctx)
    who.require("usage", "read", team)
    return json_response({"entity": str(entity), "limits": await _snapshots(ctx, entity)})


async def reset_usage(ctx: Ctx, who: AdminPrincipal, body: UsageReset) -> Response:
    entity, team = await _entity(ctx)
    who.require("usage", "update", team)
    before: JSONValue = await _snapshots(ctx, entity)  # pyright: ignore[reportAssignmentType]
    if ctx.hub.limiter is not None:
        try:
            await ctx.hub.limiter.reset_usage(entity, Metric(body.metric) if body.metric else None)
        except UnknownSubject:
            raise NotFound(f"{entity} has no limits") from None
    after: JSONValue = await _snapshots(ctx, entity)  # pyright: ignore[reportAssignmentType]
    await record(ctx, who, "usage.reset", entity.kind.value, entity.name, before, after)
    return json_response({"entity": str(entity), "limits": after})

"""Admin handlers for customers, teams, virtual keys and usage; each change is stored with its audit entry in one
transaction, then applied at once.

Customers are outside any team; a team-limited grant reaches a team, and the keys and usage of a team, only when
the team is one of the caller's. A key under a team belongs to that team's customer: a key naming another one is
refused, and so is moving a team to another customer while its keys name a different one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session
from starlette.responses import Response

from hub.audit.scrub import JSONValue
from hub.control import limits_json
from hub.doors.admin.api import Change, Conflict, Ctx, commit, json_response, off_loop, record
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


async def _write(ctx: Ctx, who: AdminPrincipal, write: Callable[[Session], object], change: Change) -> None:
    """Store a customer or team change with its audit entry, then give the limiter the new customers and teams."""
    await commit(ctx, who, write, lambda _result: change)
    await ctx.control.apply_governance()


async def _create(ctx: Ctx, who: AdminPrincipal, row: CustomerRow | TeamRow) -> None:
    """Store a new customer or team; a name another writer took since the pre-check is the same 409."""
    kind = "customer" if isinstance(row, CustomerRow) else "team"
    change = Change(f"{kind}.create", kind, row.name, None, entity_view(row))
    try:
        await _write(ctx, who, lambda s: ctx.control.store.create(row, s), change)
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None


async def create_customer(ctx: Ctx, who: AdminPrincipal, body: CustomerIn) -> Response:
    if await off_loop(ctx.control.store.get_customer, body.name) is not None:
        raise Conflict(f"a customer named '{body.name}' exists already")
    now = now_utc()
    row = CustomerRow(
        name=body.name, budget=limits_json(body.budget), rate_limit=limits_json(body.rate_limit),
        created_at=now, updated_at=now,
    )  # fmt: skip
    await _create(ctx, who, row)
    return json_response(entity_view(row), 201)


async def update_customer(ctx: Ctx, who: AdminPrincipal, body: CustomerPatch) -> Response:
    row = await _customer(ctx, ctx.params["name"])
    new = row.model_copy(update={"updated_at": now_utc()})
    if "budget" in body.model_fields_set:
        new.budget = limits_json(body.budget)
    if "rate_limit" in body.model_fields_set:
        new.rate_limit = limits_json(body.rate_limit)
    change = Change("customer.update", "customer", row.name, entity_view(row), entity_view(new))
    await _write(ctx, who, lambda s: ctx.control.store.save(new, s), change)
    return json_response(entity_view(new))


async def delete_customer(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _customer(ctx, ctx.params["name"])
    teams = [t.name for t in await off_loop(ctx.control.store.teams) if t.customer == row.name]
    keys = [k.name for k in await off_loop(ctx.hub.store.list_keys) if json.loads(k.policy).get("customer") == row.name]
    if teams or keys:
        raise Conflict(f"customer '{row.name}' is still used by teams {teams} and keys {keys}")
    change = Change("customer.delete", "customer", row.name, entity_view(row), None)
    await _write(ctx, who, lambda s: ctx.control.store.delete_entity(CustomerRow, row.name, s), change)
    return json_response({"deleted": row.name})


async def list_teams(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    rows = await off_loop(ctx.control.store.teams)
    return json_response({"data": [entity_view(r) for r in rows if who.allowed("teams", "read", r.name)]})


async def get_team(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    who.require("teams", "read", name)
    return json_response(entity_view(await _team(ctx, name)))


async def create_team(ctx: Ctx, who: AdminPrincipal, body: TeamIn) -> Response:
    who.require("teams", "create", body.name)
    if await off_loop(ctx.control.store.get_team, body.name) is not None:
        raise Conflict(f"a team named '{body.name}' exists already")
    await _check_refs(ctx, customer=body.customer)
    now = now_utc()
    row = TeamRow(
        name=body.name, customer=body.customer, budget=limits_json(body.budget),
        rate_limit=limits_json(body.rate_limit), created_at=now, updated_at=now,
    )  # fmt: skip
    await _create(ctx, who, row)
    return json_response(entity_view(row), 201)


async def update_team(ctx: Ctx, who: AdminPrincipal, body: TeamPatch) -> Response:
    name = ctx.params["name"]
    who.require("teams", "update", name)
    row = await _team(ctx, name)
    new = row.model_copy(update={"updated_at": now_utc()})
    fields = body.model_fields_set
    if "customer" in fields and body.customer != row.customer:
        who.require("teams", "update", None)  # a team's customer is above the team: a team-limited grant stops here
        await _check_refs(ctx, customer=body.customer)
        await _check_keys_follow(ctx, row.name, body.customer)
        new.customer = body.customer
    if "budget" in fields:
        new.budget = limits_json(body.budget)
    if "rate_limit" in fields:
        new.rate_limit = limits_json(body.rate_limit)
    change = Change("team.update", "team", row.name, entity_view(row), entity_view(new))
    await _write(ctx, who, lambda s: ctx.control.store.save(new, s), change)
    return json_response(entity_view(new))


async def _check_keys_follow(ctx: Ctx, team: str, customer: str | None) -> None:
    """Refuse to move `team` to `customer` while some of its keys name another customer."""
    keys = [k for k in await off_loop(ctx.hub.store.list_keys) if json.loads(k.policy).get("team") == team]
    named = sorted(k.name for k in keys if json.loads(k.policy).get("customer") not in (None, customer))
    if named:
        raise Conflict(
            f"team '{team}' cannot move to customer {customer!r} while its keys {named} name another customer "
            "(change or clear their customer first)"
        )


async def delete_team(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    name = ctx.params["name"]
    who.require("teams", "delete", name)
    row = await _team(ctx, name)
    keys = [k.name for k in await off_loop(ctx.hub.store.list_keys) if json.loads(k.policy).get("team") == row.name]
    if keys:
        raise Conflict(f"team '{row.name}' still has active keys {keys}")
    change = Change("team.delete", "team", row.name, entity_view(row), None)
    await _write(ctx, who, lambda s: ctx.control.store.delete_entity(TeamRow, row.name, s), change)
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
    hub.install_keys(ring, version)


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


async def _customer_of(ctx: Ctx, team: str | None, customer: str | None) -> None:
    """Refuse a key whose customer is not its team's (a key under a team without a customer may name none).

    Raises:
        BadRequest: unknown team or customer, or a customer other than the team's.
    """
    await _check_refs(ctx, team, customer)
    if team is None or customer is None:
        return
    owner = (await _team(ctx, team)).customer
    if customer != owner:
        where = f"belongs to customer '{owner}'" if owner is not None else "belongs to no customer"
        raise BadRequest(
            f"a key of team '{team}' belongs to its team's customer: team '{team}' {where}, not '{customer}' "
            "(omit customer to inherit the team's)"
        )


async def create_key(ctx: Ctx, who: AdminPrincipal, body: KeyIn) -> Response:
    who.require("keys", "create", body.team)
    await _customer_of(ctx, body.team, body.customer)
    policy = body.model_dump(mode="json", exclude={"name", "expires_at"}, exclude_none=True)
    secret = new_secret()
    store = ctx.hub.store

    def write(s: Session) -> KeyRow:
        return store.create_key(body.name, secret, policy, source="api", expires_at=_aware(body.expires_at), session=s)

    try:
        row = await commit(ctx, who, write, lambda r: Change("key.create", "key", r.id, None, key_view(r)))
    except DuplicateName as exc:
        raise Conflict(str(exc)) from None
    await reload_keys(ctx)
    return json_response({**key_view(row), "secret": secret}, 201)


async def update_key(ctx: Ctx, who: AdminPrincipal, body: KeyPatch) -> Response:
    row = await _key(ctx, ctx.params["key"])
    policy: dict[str, Any] = json.loads(row.policy)
    who.require("keys", "update", policy.get("team"))
    changes = body.model_dump(mode="json", exclude_unset=True)
    expires = _aware(body.expires_at) if "expires_at" in changes else row.expires_at
    changes.pop("expires_at", None)
    if "team" in changes:
        who.require("keys", "update", changes["team"])
    policy.update(changes)
    policy = {k: v for k, v in policy.items() if v is not None}
    await _customer_of(ctx, policy.get("team"), policy.get("customer"))
    before, store = key_view(row), ctx.hub.store

    def write(s: Session) -> KeyRow | None:
        return store.update_key(row.id, policy, expires, session=s)

    def change(updated: KeyRow | None) -> Change:
        if updated is None:
            raise NotFound(f"no active key '{ctx.params['key']}'")
        return Change("key.update", "key", row.id, before, key_view(updated))

    updated = await commit(ctx, who, write, change)
    assert updated is not None
    await reload_keys(ctx)
    return json_response(key_view(updated))


async def revoke_key(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    row = await _key(ctx, ctx.params["key"])
    who.require("keys", "delete", _team_of(row))
    store = ctx.hub.store

    def change(revoked: bool) -> Change:
        if not revoked:
            raise NotFound(f"no active key '{ctx.params['key']}'")
        return Change("key.revoke", "key", row.id, key_view(row), {"revoked": True})

    await commit(ctx, who, lambda s: store.revoke_key(row.id, s), change)
    await reload_keys(ctx)
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
    """Zero usage in the current window. The counters are not in the database, so no transaction can hold the
    reset and its audit entry together: the entry is written first (it records the usage before and the metric
    reset), and if it cannot be written nothing is reset."""
    entity, team = await _entity(ctx)
    who.require("usage", "update", team)
    limiter = ctx.hub.limiter
    before: JSONValue = []
    try:
        if limiter is not None:
            before = [dataclasses.asdict(s) for s in await limiter.usage(entity)]
        await record(ctx, who, "usage.reset", entity.kind.value, entity.name, before, {"reset": body.metric or "all"})
        if limiter is not None:
            await limiter.reset_usage(entity, Metric(body.metric) if body.metric else None)
    except UnknownSubject:
        raise NotFound(f"{entity} has no limits") from None
    return json_response({"entity": str(entity), "limits": await _snapshots(ctx, entity)})

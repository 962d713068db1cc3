"""Admin handlers for the people who sign in (`[sign_in]`): `GET /api/v1/users`, `GET /api/v1/users/{user}` and
`DELETE /api/v1/users/{user}/tokens`.

A person is named by their id (`user_...`) or their email. Their reach is shown as their grants give it now (the
configuration may have changed since they signed in). Revoking ends every session of the person at once: their
access and refresh tokens are revoked and their consents forgotten in the transaction of the audit entry; this
process drops the access tokens from memory at once and the other replicas at their next change poll. The person
may sign in again while the identity provider and the grants let them (to keep someone out, remove them from the
group at the provider, or the grant).

People belong to no admin team: reading them needs `users:read`, revoking `users:delete`, both unscoped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from hub.doors.admin.api import PREFIX, Change, Ctx, Op, commit, json_response, off_loop
from hub.errors import NotFound
from hub.governance.rbac import AdminPrincipal

if TYPE_CHECKING:
    from hub.signin.service import SignIn
    from hub.store.signin_tables import SignInPersonRow, SignInTokenRow


def _signin(ctx: Ctx) -> SignIn:
    running = ctx.hub.signin
    if running is None:
        raise NotFound("sign-in is off on this hub (no [sign_in] section)")
    return running


async def _person(ctx: Ctx, signin: SignIn) -> SignInPersonRow:
    wanted = ctx.params["user"]
    row = await off_loop(signin.store.person, wanted)
    if row is None:
        people = await off_loop(signin.store.people)
        row = next((p for p in people if p.name == f"user:{wanted}"), None)
    if row is None:
        raise NotFound(f"no person '{wanted}' has signed in")
    return row


def _view(signin: SignIn, row: SignInPersonRow, tokens: list[SignInTokenRow]) -> dict[str, Any]:
    from hub.signin.people import Person, person_key

    person = Person.from_json(json.loads(row.person))
    key = person_key(signin.section, person)
    live = [t for t in tokens if not t.revoked]
    return {
        "id": row.id,
        "name": row.name,
        "email": person.email,
        "subject": person.subject,
        "issuer": person.issuer,
        "groups": list(person.groups),
        "granted": key is not None,
        "tools": list(key.tools) if key is not None else [],
        "models": list(key.models) if key is not None else [],
        "team": key.team if key is not None else None,
        "first_seen_at": _time(row.first_seen_at),
        "last_seen_at": _time(row.last_seen_at),
        "access_tokens": sum(1 for t in live if t.kind == "access"),
        "refresh_tokens": sum(1 for t in live if t.kind == "refresh" and not t.used),
        "clients": sorted({t.client_id for t in live}),
    }


def _time(moment: datetime) -> str:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()


async def list_users(ctx: Ctx, _who: AdminPrincipal, _body: None) -> Response:
    signin = _signin(ctx)
    now = datetime.now(UTC)

    def read() -> list[dict[str, Any]]:
        return [_view(signin, row, signin.store.person_tokens(row.id, now)) for row in signin.store.people()]

    return json_response({"data": await off_loop(read)})


async def get_user(ctx: Ctx, _who: AdminPrincipal, _body: None) -> Response:
    signin = _signin(ctx)
    row = await _person(ctx, signin)
    tokens = await off_loop(signin.store.person_tokens, row.id, datetime.now(UTC))
    return json_response(_view(signin, row, tokens))


async def revoke_user(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    signin = _signin(ctx)
    row = await _person(ctx, signin)
    store = signin.store

    def change(hashes: list[str]) -> Change:
        return Change("user.revoke", "user", row.id, None, {"name": row.name, "access_tokens": len(hashes)})

    hashes = await commit(ctx, who, lambda s: store.revoke_person(s, row.id), change)
    signin.drop(hashes)
    return json_response({"id": row.id, "name": row.name, "revoked": True, "access_tokens": len(hashes)})


_R = PREFIX
OPERATIONS: list[Op] = [
    Op("GET", f"{_R}/users", "People who signed in, with their reach and sessions", list_users, "users"),
    Op("GET", f"{_R}/users/{{user}}", "A person by id or email", get_user, "users"),
    Op("DELETE", f"{_R}/users/{{user}}/tokens", "End every session of a person (tokens revoked at once)",
       revoke_user, "users", "delete"),
]  # fmt: skip

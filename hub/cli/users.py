"""`agenthub users`: the people who sign in to `/mcp` (`[sign_in]`). They work on the database, as `keys` does.

```
agenthub users list   [--config FILE] [--json]      who signed in, their groups, team, sessions, last sign-in
agenthub users revoke [--config FILE] ID|EMAIL      end every session of the person at once
```
A revocation revokes the person's access and refresh tokens and forgets their consents, with its audit entry (actor
`cli:<user>`) in the same transaction; running hubs that share the database drop the tokens at their next change
poll (within a second). The person may sign in again while the identity provider and the grants let them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from hub.cli.admin import AdminContext, open_context


def _people(ctx: AdminContext) -> list[dict[str, Any]]:
    from hub.signin.people import Person, person_key
    from hub.signin.store import SignInStore

    store, section, now = SignInStore(ctx.sql.engine), ctx.settings.sign_in, datetime.now(UTC)
    people: list[dict[str, Any]] = []
    for row in store.people():
        person = Person.from_json(json.loads(row.person))
        key = person_key(section, person) if section is not None else None
        live = [t for t in store.person_tokens(row.id, now) if not t.revoked]
        people.append({
            "id": row.id, "name": row.name, "email": person.email, "groups": list(person.groups),
            "team": key.team if key is not None else None, "granted": key is not None,
            "access_tokens": sum(1 for t in live if t.kind == "access"),
            "last_seen_at": row.last_seen_at.replace(tzinfo=row.last_seen_at.tzinfo or UTC).isoformat(),
        })  # fmt: skip
    return people


def cmd_users_list(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    try:
        people = _people(ctx)
    finally:
        ctx.close()
    if args.json:
        sys.stdout.write(json.dumps(people) + "\n")
        return 0
    for p in people:
        grant = "" if p["granted"] else " (no grant applies now)"
        groups = ",".join(p["groups"]) or "-"
        sys.stdout.write(f"{p['name']:32} {p['id']:30} team={p['team'] or '-'} groups={groups} "
                         f"tokens={p['access_tokens']} last={p['last_seen_at']}{grant}\n")  # fmt: skip
    return 0


def cmd_users_revoke(args: argparse.Namespace) -> int:
    from hub.signin.store import SignInStore

    ctx = open_context(args)
    try:
        store = SignInStore(ctx.sql.engine)
        row = store.person(args.user) or next((p for p in store.people() if p.name == f"user:{args.user}"), None)
        if row is None:
            sys.stderr.write(f"error: no person '{args.user}' has signed in\n")
            return 1
        revoked: list[int] = []

        def write(s: Session) -> None:
            revoked.append(len(store.revoke_person(s, row.id)))

        ctx.change(write, "user.revoke", "user", row.id, None, {"name": row.name, "via": "cli"})
    finally:
        ctx.close()
    sys.stdout.write(f"Revoked every session of {row.name} ({revoked[0]} live access tokens).\n")
    return 0


def add_users_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `users list` and `users revoke`."""
    users = sub.add_parser("users", help="people who sign in to /mcp").add_subparsers(
        dest="users_command", required=True
    )
    listing = users.add_parser("list", parents=[common], help="who signed in, their reach and sessions")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_users_list)
    revoke = users.add_parser("revoke", parents=[common], help="end every session of a person (effective at once)")
    revoke.add_argument("user", help="the person's id (user_...) or email")
    revoke.set_defaults(func=cmd_users_revoke)

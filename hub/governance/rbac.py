"""Roles and permissions of the admin API.

A permission is `resource:action`, optionally limited to the caller's own teams with a `:own` suffix
(`keys:update:own`). `*` stands for every resource or every action.

| role      | may                                                                                      |
|-----------|------------------------------------------------------------------------------------------|
| admin     | everything                                                                               |
| developer | read customers, teams, servers, usage, roles, guardrails; manage keys of its own teams    |
| viewer    | read customers, teams, keys, servers, usage, roles, guardrails                           |

Only `admin` manages servers, roles, admin tokens and the audit log's settings (retention, purge). Custom
roles are any set of permissions, stored in the database. Role names are case-insensitive.

A grant never exceeds its granter: an admin token or a custom role may carry only permissions its creator holds
itself (`uncovered`), and a team-limited permission only for teams the creator belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hub.errors import Forbidden

RESOURCES = (
    "customers", "teams", "keys", "servers", "usage", "roles", "tokens", "audit", "guardrails", "logs", "users"
)  # fmt: skip
"""Everything the admin API manages (`logs` is the request log, read only; `users` the people who sign in)."""

ACTIONS = ("read", "create", "update", "delete", "export")
"""What can be done to a resource (`export` applies to `audit`)."""

_PERMISSION = re.compile(r"^(?P<resource>[a-z*]+):(?P<action>[a-z*]+)(?::(?P<scope>own))?$")

BUILTIN_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("*:*",),
    "developer": (
        "customers:read",
        "teams:read",
        "servers:read",
        "usage:read",
        "roles:read",
        "guardrails:read",
        "keys:read:own",
        "keys:create:own",
        "keys:update:own",
        "keys:delete:own",
        "usage:update:own",
    ),
    "viewer": (
        "customers:read",
        "teams:read",
        "keys:read",
        "servers:read",
        "usage:read",
        "roles:read",
        "guardrails:read",
    ),
}


class InvalidPermission(ValueError):
    """A permission string is not `resource:action[:own]` over known names."""


@dataclass(frozen=True, slots=True)
class Permission:
    """One grant: `resource` x `action`, for every team or only the caller's own."""

    resource: str
    action: str
    own_teams_only: bool = False

    @classmethod
    def parse(cls, text: str) -> Permission:
        """Parse `resource:action[:own]`.

        Raises:
            InvalidPermission: unknown resource or action, or bad syntax.
        """
        match = _PERMISSION.match(text.strip())
        if match is None:
            raise InvalidPermission(f"permission {text!r} is not 'resource:action' or 'resource:action:own'")
        resource, action = match["resource"], match["action"]
        if resource != "*" and resource not in RESOURCES:
            raise InvalidPermission(f"unknown resource {resource!r} in {text!r} (known: {', '.join(RESOURCES)})")
        if action != "*" and action not in ACTIONS:
            raise InvalidPermission(f"unknown action {action!r} in {text!r} (known: {', '.join(ACTIONS)})")
        return cls(resource, action, match["scope"] == "own")

    def covers(self, resource: str, action: str) -> bool:
        return self.resource in ("*", resource) and self.action in ("*", action)

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}" + (":own" if self.own_teams_only else "")


def parse_permissions(texts: Iterable[str]) -> tuple[Permission, ...]:
    """Parse many permissions (see `Permission.parse`)."""
    return tuple(Permission.parse(t) for t in texts)


@dataclass(frozen=True)
class AdminPrincipal:
    """Who is calling the admin API: an identity, its roles' permissions and the teams it belongs to."""

    subject: str
    roles: tuple[str, ...]
    teams: frozenset[str] = frozenset()
    permissions: tuple[Permission, ...] = ()
    via: str = "token"
    """`bootstrap`, `token` or `oidc`."""
    token_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict[str, str])

    def allowed(self, resource: str, action: str, team: str | None = None) -> bool:
        """Whether the principal may do `action` on `resource`; `team` is the team the target belongs to
        (None for a target outside any team, which `:own` permissions never cover)."""
        for perm in self.permissions:
            if not perm.covers(resource, action):
                continue
            if not perm.own_teams_only or (team is not None and team in self.teams):
                return True
        return False

    def may_any(self, resource: str, action: str) -> bool:
        """Whether some grant covers `action` on `resource` (team-limited or not)."""
        return any(p.covers(resource, action) for p in self.permissions)

    def require(self, resource: str, action: str, team: str | None = None) -> None:
        """Raise `Forbidden` unless `allowed`."""
        if not self.allowed(resource, action, team):
            where = f" of team '{team}'" if team else ""
            raise Forbidden(f"'{self.subject}' may not {action} {resource}{where}")

    def require_covers(self, permissions: Iterable[Permission], teams: Iterable[str], what: str) -> None:
        """Raise `Forbidden` unless this principal holds every one of `permissions` for `teams` (see `uncovered`);
        `what` names the grant in the message (e.g. "token 'ci'")."""
        missing = uncovered(permissions, teams, self.permissions, self.teams)
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise Forbidden(f"'{self.subject}' may not grant {names} (to {what}): a grant never exceeds its granter's")


def uncovered(
    wanted: Iterable[Permission], teams: Iterable[str], held: Iterable[Permission], held_teams: Iterable[str]
) -> tuple[Permission, ...]:
    """The permissions of `wanted`, granted for `teams`, that a holder of `held` in `held_teams` does not have.

    A wanted permission is covered by one held grant that matches its resource and action, where a wildcard is
    matched only by a wildcard (`*:read` needs `*:read` or `*:*`, not every resource one by one). An unscoped
    grant covers it for any teams; a team-limited (`:own`) grant covers only a team-limited permission, and only
    when every one of `teams` is one of `held_teams`. Pure: the caller resolves roles first.
    """
    grants = tuple(held)
    inside = set(teams) <= set(held_teams)

    def covered(perm: Permission) -> bool:
        return any(
            g.resource in ("*", perm.resource)
            and g.action in ("*", perm.action)
            and (not g.own_teams_only or (perm.own_teams_only and inside))
            for g in grants
        )

    return tuple(p for p in wanted if not covered(p))


def resolve_roles(
    names: Sequence[str], custom: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...], tuple[Permission, ...]]:
    """The known role names among `names` (unknown ones dropped) and the union of their permissions.

    `custom` maps custom role names to permission strings; a built-in name cannot be redefined.
    """
    roles: list[str] = []
    perms: list[Permission] = []
    for raw in names:
        name = raw.strip().lower()
        grants = BUILTIN_ROLES.get(name)
        if grants is None:
            grants = tuple(custom.get(name, ()))
            if name not in custom:
                continue
        if name not in roles:
            roles.append(name)
        for text in grants:
            try:
                perm = Permission.parse(text)
            except InvalidPermission:
                continue  # a stored role cannot grant what this version does not know
            if perm not in perms:
                perms.append(perm)
    return tuple(roles), tuple(perms)


def map_groups(groups: Iterable[str], mapping: Mapping[str, Sequence[str]]) -> list[str]:
    """Names mapped from identity-provider groups (e.g. group -> roles), in mapping order, without repeats."""
    present = set(groups)
    out: list[str] = []
    for group, names in mapping.items():
        if group in present:
            out.extend(n for n in names if n not in out)
    return out

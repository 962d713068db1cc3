"""People: who signed in, and what `[[sign_in.grants]]` give them.

A person is a key-like identity in the pipeline: their grants compile into a `VirtualKey` whose id is the
person's (`user_` and a hash of issuer and subject), so the authz, limits and audit stages treat a person exactly
as a key (tools filter, team, a budget of their own, request-log rows naming them) at no extra cost per call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.governance.keys import VirtualKey
from hub.signin.config import SignInGrant, SignInSection

PERSON_PREFIX = "user_"
NAME_PREFIX = "user:"
"""What the name of a person's key starts with (how the request log, metrics and audit name a person)."""


@dataclass(frozen=True)
class Person:
    """Who signed in: the IdP's subject, email, groups, and the claims the grants read."""

    issuer: str
    subject: str
    email: str | None
    groups: tuple[str, ...]
    claims: Mapping[str, str]

    @property
    def id(self) -> str:
        digest = hashlib.sha256(f"{self.issuer}|{self.subject}".encode()).hexdigest()
        return PERSON_PREFIX + digest[:24]

    @property
    def name(self) -> str:
        return NAME_PREFIX + (self.email or self.subject)

    def to_json(self) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "sub": self.subject,
            "email": self.email,
            "groups": list(self.groups),
            "claims": dict(self.claims),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Person:
        return cls(
            issuer=str(data["iss"]),
            subject=str(data["sub"]),
            email=data.get("email"),
            groups=tuple(data.get("groups") or ()),
            claims=dict(data.get("claims") or {}),
        )


def signed_in_as(key: VirtualKey) -> str | None:
    """The email (or the IdP's subject) of the person `key` stands for; None for a virtual key. Pages shown to a
    person name them so, not by the key-like name their grants compile into."""
    return key.name.removeprefix(NAME_PREFIX) if key.id.startswith(PERSON_PREFIX) else None


def claims_read(section: SignInSection, claims: Mapping[str, Any]) -> dict[str, str]:
    """The claims the grants select on, as text (only those are kept with a token)."""
    names = {grant.claim for grant in section.grants if grant.claim is not None}
    return {name: _text(claims[name]) for name in names if name in claims}


def matching(grants: Sequence[SignInGrant], person: Person) -> list[SignInGrant]:
    """The grants that apply to `person`, in configuration order."""
    found: list[SignInGrant] = []
    for grant in grants:
        if grant.group is not None and grant.group in person.groups:
            found.append(grant)
        elif grant.claim is not None and person.claims.get(grant.claim) == grant.value:
            found.append(grant)
    return found


def person_key(section: SignInSection, person: Person) -> VirtualKey | None:
    """The person's reach as a key: tools and models of every matching grant; the team, budget and rate limit of
    the first matching grant that sets one. None when no grant applies (the person may not sign in)."""
    grants = matching(section.grants, person)
    if not grants:
        return None
    tools = tuple(dict.fromkeys(t for g in grants for t in g.tools))
    models = tuple(dict.fromkeys(m for g in grants for m in g.models))
    team = next((g.team for g in grants if g.team is not None), None)
    budget = next((g.budget for g in grants if g.budget is not None), None)
    rate = next((g.rate_limit for g in grants if g.rate_limit is not None), None)
    return VirtualKey(
        id=person.id, name=person.name, tools=tools, models=models, team=team, budget=budget, rate_limit=rate
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

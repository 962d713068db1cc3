"""Admin handler for the LLM routing table: `GET /models` (its route is added to the table in `ops`).

Each alias with its deployments (provider, model, weight, pinned key) and, per key a deployment may use, the
router's circuit state: consecutive failures and whether the hop is cooling down, and until when. The providers
are listed by name, kind, key names and models; never a secret, a secret's reference or a base URL (which may
carry credentials). Reading it needs `servers:read`: providers are upstreams, as MCP servers are.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from hub.doors.admin.api import PREFIX, Ctx, Op, json_response
from hub.governance.rbac import AdminPrincipal
from llm.config import LLMConfig
from llm.result import Hop

_LOCAL_KEY = "default"
"""The key name the router gives a provider configured without keys (a local server)."""

Health = dict[Hop, tuple[int, float]]


def _key_names(config: LLMConfig, provider: str) -> list[str]:
    found = config.providers.get(provider)
    return [k.name for k in found.keys] if found is not None and found.keys else [_LOCAL_KEY]


def _hop_view(hop: Hop, health: Health, now: datetime) -> dict[str, Any]:
    failures, left = health.get(hop, (0, 0.0))
    until = (now + timedelta(seconds=left)).isoformat() if left > 0 else None
    return {"name": hop.key, "failures": failures, "cooling_down": left > 0, "cooling_until": until}


def routing_view(config: LLMConfig, health: Health, now: datetime) -> dict[str, Any]:
    """The aliases, their deployments with the router's circuit state per key, and the providers (no secrets)."""
    aliases: list[dict[str, Any]] = []
    seen: set[Hop] = set()
    for alias, model in config.models.items():
        deployments: list[dict[str, Any]] = []
        for d in model.deployments:
            hops = [Hop(d.provider, d.model, k) for k in ([d.key] if d.key else _key_names(config, d.provider))]
            seen.update(hops)
            keys = [_hop_view(h, health, now) for h in hops]
            until = max((k["cooling_until"] for k in keys if k["cooling_until"]), default=None)
            deployments.append(
                {"provider": d.provider, "model": d.model, "weight": d.weight, "key": d.key,
                 "cooling_down": all(k["cooling_down"] for k in keys), "cooling_until": until,
                 "failures": sum(k["failures"] for k in keys), "keys": keys}
            )  # fmt: skip
        aliases.append({"alias": alias, "fallbacks": list(model.fallbacks), "deployments": deployments})
    others = [
        {"provider": h.provider, "model": h.model, **_hop_view(h, health, now)}
        for h in sorted(health, key=lambda h: (h.provider, h.model, h.key))
        if h not in seen
    ]
    providers = [
        {"name": name, "kind": p.kind, "keys": _key_names(config, name), "models": list(p.models)}
        for name, p in config.providers.items()
    ]
    return {"data": aliases, "providers": providers, "other_hops": others}


async def list_models(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    router = ctx.hub.llm_router
    if router is None:
        return json_response({"data": [], "providers": [], "other_hops": []})
    return json_response(routing_view(router.config, router.health(), datetime.now(UTC)))


OPERATIONS: list[Op] = [
    Op("GET", f"{PREFIX}/models", "Model aliases, deployments and their cool-downs; providers without secrets",
       list_models, "servers"),
]  # fmt: skip

"""Governance: pure policy logic (limits, budgets, filters, pricing) the pipeline stages call.

Redis counters live in `hub.store.redis_counters`; import them where they are used. The names below load on
first use: the counter server of `agenthub serve --workers N` imports `hub.governance.counters` in the supervisor
process, whose memory is budgeted, and must not pay for the configuration models (pydantic).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on first use (`__getattr__`), so a process that needs only the counters skips pydantic
    from hub.governance.config import BudgetConfig, CustomerConfig, GovernanceConfig, RateLimitConfig, TeamConfig
    from hub.governance.counters import Counters
    from hub.governance.errors import (
        BudgetDenied,
        CountersUnavailable,
        GovernanceError,
        LimitDenied,
        RateLimitDenied,
        UnknownSubject,
    )
    from hub.governance.filters import GlobSet
    from hub.governance.limits import Limiter
    from hub.governance.pricing import ToolPricing
    from hub.governance.usage import EntityKind, EntityRef, Metric, Reservation, Usage, UsageSnapshot

__all__ = [
    "BudgetConfig",
    "BudgetDenied",
    "Counters",
    "CountersUnavailable",
    "CustomerConfig",
    "EntityKind",
    "EntityRef",
    "GlobSet",
    "GovernanceConfig",
    "GovernanceError",
    "LimitDenied",
    "Limiter",
    "Metric",
    "RateLimitConfig",
    "RateLimitDenied",
    "Reservation",
    "TeamConfig",
    "ToolPricing",
    "UnknownSubject",
    "Usage",
    "UsageSnapshot",
]


_HOMES = {
    "BudgetConfig": "config",
    "CustomerConfig": "config",
    "GovernanceConfig": "config",
    "RateLimitConfig": "config",
    "TeamConfig": "config",
    "Counters": "counters",
    "BudgetDenied": "errors",
    "CountersUnavailable": "errors",
    "GovernanceError": "errors",
    "LimitDenied": "errors",
    "RateLimitDenied": "errors",
    "UnknownSubject": "errors",
    "GlobSet": "filters",
    "Limiter": "limits",
    "ToolPricing": "pricing",
    "EntityKind": "usage",
    "EntityRef": "usage",
    "Metric": "usage",
    "Reservation": "usage",
    "Usage": "usage",
    "UsageSnapshot": "usage",
}


def __getattr__(name: str) -> object:
    """Import the submodule that defines `name` (once; the name is then a plain module attribute)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value

"""Governance: pure policy logic (limits, budgets, filters, pricing) the pipeline stages call.

Redis counters live in `hub.store.redis_counters`; import them where they are used.
"""

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

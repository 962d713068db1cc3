"""The control plane of a running hub: applies admin changes at once and follows those made elsewhere.

Customers, teams and run-time servers live in the admin tables. A change made through this process's admin
API is applied directly (`Limiter.configure`, `Registry.add/remove`); every process also polls the
`governance_version` and `servers_version` meta values, so changes made by another replica or by the CLI
arrive within the poll interval. Customers and teams declared in the config file are written to the tables
at start (the file wins for those names). Servers declared in the file are never stored; run-time servers
must use other names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
from pydantic import TypeAdapter, ValidationError

from connectors.config import HttpConfig, SseConfig, StdioConfig, UpstreamConfig
from connectors.registry import Registry
from hub.audit.adminlog import AuditLog, AuditShipper, audit_keyring
from hub.governance import CustomerConfig, GovernanceConfig, TeamConfig
from hub.governance.config import BudgetConfig, RateLimitConfig
from hub.settings import Settings, resolve_secret
from hub.store.admin_tables import AdminStore, CustomerRow, TeamRow, dumps, loads_opt, now_utc

if TYPE_CHECKING:
    from hub.governance import Limiter
    from hub.store.sql import SqlStore


class ControlHost(Protocol):
    """What the control plane needs of the running hub."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> SqlStore: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def limiter(self) -> Limiter | None: ...

    def forget_server(self, name: str) -> None:
        """A run-time server was removed: drop what the hub keeps for it (its single-server endpoint)."""
        ...


logger = logging.getLogger(__name__)

SERVER_CONFIG: TypeAdapter[StdioConfig | SseConfig | HttpConfig] = TypeAdapter(UpstreamConfig)


def limits_json(value: BudgetConfig | RateLimitConfig | None) -> str | None:
    return None if value is None else dumps(value.model_dump(mode="json", exclude_none=True))


def customer_config(row: CustomerRow) -> CustomerConfig:
    return CustomerConfig.model_validate(
        {"name": row.name, "budget": loads_opt(row.budget), "rate_limit": loads_opt(row.rate_limit)}
    )


def team_config(row: TeamRow) -> TeamConfig:
    return TeamConfig.model_validate(
        {
            "name": row.name,
            "customer": row.customer,
            "budget": loads_opt(row.budget),
            "rate_limit": loads_opt(row.rate_limit),
        }
    )


def resolve_server(
    config: StdioConfig | SseConfig | HttpConfig, base_dir: Path
) -> StdioConfig | SseConfig | HttpConfig:
    """Resolve `env:`/`file:` references in a stored server's headers or env (they are stored as references).

    Raises:
        ConfigError: a referenced variable or file is missing.
    """
    where = f"servers.{config.name}"
    if isinstance(config, StdioConfig):
        env = {k: resolve_secret(v, base_dir, f"{where}.env.{k}") for k, v in config.env.items()}
        return config.model_copy(update={"env": env})
    headers = {k: resolve_secret(v, base_dir, f"{where}.headers.{k}") for k, v in config.headers.items()}
    return config.model_copy(update={"headers": headers})


class ControlPlane:
    """Owns the admin tables, the audit log and the run-time servers of one hub process."""

    def __init__(self, hub: ControlHost) -> None:
        self.hub = hub
        self.store = AdminStore(hub.store.engine)
        self.audit = AuditLog(self.store, audit_keyring(hub.settings.audit, hub.settings.base_dir))
        self.runtime_servers: dict[str, StdioConfig | SseConfig | HttpConfig] = {}
        self._versions: dict[str, str] = {}
        self._servers_reads = 0
        self._servers_applied = 0

    # -- start -----------------------------------------------------------------------------------------------

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Load stored state into the running hub and start the audit tasks (call once the registry runs); changes
        made by other processes arrive through `follow`."""
        await anyio.to_thread.run_sync(self.sync_config_entities)
        await self.apply_governance()
        await self.apply_servers()
        section = self.hub.settings.audit
        if section.forward is not None:
            tg.start_soon(AuditShipper(self.audit, section.forward).run)
        if section.retention_days > 0:
            tg.start_soon(self._purge_loop, section.retention_days, section.purge_interval_s)

    def sync_config_entities(self) -> None:
        """Write the config file's customers and teams to the tables where they differ."""
        now = now_utc()
        for c in self.hub.settings.customers:
            current = self.store.get_customer(c.name)
            row = CustomerRow(
                name=c.name, budget=limits_json(c.budget), rate_limit=limits_json(c.rate_limit), source="config",
                created_at=current.created_at if current else now, updated_at=now,
            )  # fmt: skip
            if current is None or (current.budget, current.rate_limit) != (row.budget, row.rate_limit):
                self.store.save(row)
        for t in self.hub.settings.teams:
            current = self.store.get_team(t.name)
            row = TeamRow(
                name=t.name, customer=t.customer, budget=limits_json(t.budget), rate_limit=limits_json(t.rate_limit),
                source="config", created_at=current.created_at if current else now, updated_at=now,
            )  # fmt: skip
            old = None if current is None else (current.customer, current.budget, current.rate_limit)
            if old != (row.customer, row.budget, row.rate_limit):
                self.store.save(row)

    # -- governance ------------------------------------------------------------------------------------------

    def governance_config(self) -> GovernanceConfig:
        """Customers and teams from the tables, pricing from the config file."""
        customers = [customer_config(r) for r in self.store.customers()]
        teams = [team_config(r) for r in self.store.teams()]
        return GovernanceConfig(customers=customers, teams=teams, pricing=self.hub.settings.pricing)

    async def apply_governance(self) -> None:
        """Give the limiter the current customers and teams (keys are re-linked to them)."""
        version = await anyio.to_thread.run_sync(self.store.version, "governance_version")
        try:
            config = await anyio.to_thread.run_sync(self.governance_config)
        except (ValidationError, ValueError):
            logger.exception("stored customers and teams are inconsistent; keeping the previous ones")
            return
        if self.hub.limiter is not None:
            self.hub.limiter.configure(config)
        self._versions["governance_version"] = version

    # -- servers ---------------------------------------------------------------------------------------------

    def stored_servers(self) -> dict[str, StdioConfig | SseConfig | HttpConfig]:
        out: dict[str, StdioConfig | SseConfig | HttpConfig] = {}
        for row in self.store.servers():
            if row.name in self.hub.settings.servers:
                logger.warning("stored server %r is shadowed by the config file's server of that name", row.name)
                continue
            try:
                out[row.name] = SERVER_CONFIG.validate_python({**json.loads(row.config), "name": row.name})
            except ValidationError:
                logger.exception("stored server %r is invalid; skipped", row.name)
        return out

    async def apply_servers(self) -> None:
        """Make the registry's run-time upstreams match the stored ones (add, replace changed, remove gone).

        Callers may overlap (the admin API's change and the follower's poll of the same change): each pass reads
        the stored servers, and only a pass that read them after every pass applied so far changes anything, so
        an older read never undoes a newer one. The bookkeeping of a pass happens without a pause; only the
        removals wait (for the registry to drop the upstream and tell the doors), and a server that a later pass
        has added again meanwhile is not removed.
        """
        self._servers_reads += 1
        ticket = self._servers_reads
        version = await anyio.to_thread.run_sync(self.store.version, "servers_version")
        wanted = await anyio.to_thread.run_sync(self.stored_servers)
        if ticket < self._servers_applied:
            return  # a pass that read later has applied already
        self._servers_applied = ticket
        registry = self.hub.registry
        for name, config in wanted.items():
            if self.runtime_servers.get(name) != config:
                try:
                    registry.add(resolve_server(config, self.hub.settings.base_dir))
                except Exception:
                    logger.exception("starting server %r failed", name)
                    continue
                self.runtime_servers[name] = config
        gone = [n for n in self.runtime_servers if n not in wanted]
        for name in gone:
            del self.runtime_servers[name]
        self._versions["servers_version"] = version
        for name in gone:
            if name in self.runtime_servers:
                continue  # a later pass added it again while an earlier removal was waiting
            await registry.remove(name)
            if name not in self.runtime_servers:
                self.hub.forget_server(name)

    # -- watching --------------------------------------------------------------------------------------------

    async def follow(self, versions: Mapping[str, str]) -> None:
        """Follow changes made by other processes: `versions` are the meta values read just now; a moved
        `governance_version` or `servers_version` applies the stored customers and teams, or servers."""
        try:
            for name, apply in (
                ("governance_version", self.apply_governance),
                ("servers_version", self.apply_servers),
            ):
                if versions.get(name, "0") != self._versions.get(name):
                    await apply()
        except Exception:
            logger.exception("following admin changes failed")

    async def _purge_loop(self, days: float, interval: float) -> None:
        while True:
            try:
                await self.audit.purge(days)
            except Exception:
                logger.exception("audit retention purge failed")
            await anyio.sleep(interval)


def config_dict(config: StdioConfig | SseConfig | HttpConfig) -> dict[str, Any]:
    """A server's stored form (without its name, which is the row's key)."""
    return config.model_dump(mode="json", exclude={"name"})

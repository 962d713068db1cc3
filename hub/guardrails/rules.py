"""The guardrails in force: the config file's `[[guardrails]]` plus those managed through the admin API.

Rules from the file are read-only at run time; rules added through `/api/v1/guardrails` are stored in the
`guardrail_rules` table (the file's rules come first, in file order, then the stored ones by name). Every change
builds a new `Guardrails` engine and swaps it in at once; calls already running finish on the engine they
started with, which is closed a while later. Other replicas follow the `guardrails_version` meta value.
Credentials of remote services set through the API must be `env:NAME` or `file:/path` references, so the
database never holds a vendor secret.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from hub.guardrails import GuardrailConfig, GuardrailConfigError
from hub.store.admin_tables import writing
from hub.store.sql import read_meta
from hub.store.tables import GuardrailRuleRow, MetaRow

if TYPE_CHECKING:
    from hub.guardrails import Guardrails

logger = logging.getLogger(__name__)

VERSION_KEY = "guardrails_version"
SECRET_FIELDS = ("api_key", "access_key_id", "secret_access_key", "session_token")
RETIRE_AFTER_S = 120.0
"""How long a replaced engine stays open for the calls that started on it."""


def stored_form(config: GuardrailConfig) -> dict[str, Any]:
    """The fields that were set, credentials as given (references, see `check_references`)."""
    data = config.model_dump(mode="json", exclude_unset=True)
    for name in SECRET_FIELDS:
        value: SecretStr | None = getattr(config, name)
        if value is not None and name in data:
            data[name] = value.get_secret_value()
    return data


def public_form(config: GuardrailConfig) -> dict[str, Any]:
    """The fields that were set, for the admin API: references shown, literal credentials hidden."""
    data = stored_form(config)
    for name in SECRET_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and not value.startswith(("env:", "file:")):
            data[name] = "[REDACTED]"
    return data


def check_references(config: GuardrailConfig) -> None:
    """Refuse a literal credential (the API stores rules in the database).

    Raises:
        ValueError: a credential field holds a value instead of an `env:`/`file:` reference.
    """
    for name in SECRET_FIELDS:
        value: SecretStr | None = getattr(config, name)
        if value is not None and not value.get_secret_value().startswith(("env:", "file:")):
            raise ValueError(f"{name} must be an env:NAME or file:/path reference when set through the API")


class GuardrailRuleStore:
    """The `guardrail_rules` table (blocking calls: run them off the event loop)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[GuardrailRuleRow.__table__, MetaRow.__table__])  # pyright: ignore[reportAttributeAccessIssue]

    def version(self) -> str:
        return read_meta(self.engine, VERSION_KEY)

    def rules(self) -> list[GuardrailConfig]:
        """Stored rules by name (a row that no longer validates is skipped and logged)."""
        out: list[GuardrailConfig] = []
        with Session(self.engine) as s:
            rows = list(s.exec(select(GuardrailRuleRow).order_by(col(GuardrailRuleRow.name))))
        for row in rows:
            try:
                out.append(GuardrailConfig.model_validate({**orjson.loads(row.config), "name": row.name}))
            except ValueError:
                logger.exception("stored guardrail %r is invalid; skipped", row.name)
        return out

    def get(self, name: str) -> GuardrailConfig | None:
        return next((r for r in self.rules() if r.name == name), None)

    def save(self, config: GuardrailConfig, session: Session | None = None) -> None:
        """Insert or replace a rule; in `session` when given (its owner commits, e.g. with the audit entry)."""
        now = datetime.now(UTC)
        with writing(self.engine, session) as s:
            current = s.get(GuardrailRuleRow, config.name)
            created = current.created_at if current is not None else now
            data = orjson.dumps({k: v for k, v in stored_form(config).items() if k != "name"}).decode()
            s.merge(GuardrailRuleRow(name=config.name, config=data, created_at=created, updated_at=now))
            s.merge(MetaRow(key=VERSION_KEY, value=uuid.uuid4().hex))

    def delete(self, name: str, session: Session | None = None) -> bool:
        """Delete a rule (False when there is none); in `session` when given (its owner commits)."""
        with writing(self.engine, session) as s:
            row = s.get(GuardrailRuleRow, name)
            if row is None:
                return False
            s.delete(row)
            s.merge(MetaRow(key=VERSION_KEY, value=uuid.uuid4().hex))
            return True


class GuardrailRules:
    """Owns the current `Guardrails` engine of one hub process."""

    def __init__(self, configured: Sequence[GuardrailConfig], engine: Engine) -> None:
        self.configured = list(configured)
        self.store = GuardrailRuleStore(engine)
        self.stored: list[GuardrailConfig] = []
        self._engine: Guardrails | None = None
        self._retired: list[tuple[float, Guardrails]] = []
        self._version = ""

    def current(self) -> Guardrails | None:
        """The engine in force (None when no guardrail is configured)."""
        return self._engine

    def names(self) -> set[str]:
        return {c.name for c in self.configured} | {c.name for c in self.stored}

    @staticmethod
    def build(configs: Sequence[GuardrailConfig]) -> Guardrails | None:
        """An engine for these rules.

        Raises:
            GuardrailConfigError: a rule does not build (bad rule id, duplicate name, missing credential).
        """
        if not configs:
            return None
        from hub.guardrails.engine import Guardrails  # loaded with the first rule

        return Guardrails(configs)

    async def apply(self) -> None:
        """Load the stored rules and put an engine for them and the file's rules in force.

        Raises:
            GuardrailConfigError: the file's rules do not build (a stored rule that does not build is skipped).
        """
        version = await anyio.to_thread.run_sync(self.store.version)
        stored = await anyio.to_thread.run_sync(self.store.rules)
        taken = {c.name for c in self.configured}
        usable: list[GuardrailConfig] = []
        for rule in stored:
            if rule.name in taken:
                logger.warning("stored guardrail %r is shadowed by the config file's rule of that name", rule.name)
                continue
            try:
                self.build([rule])
            except GuardrailConfigError:
                logger.exception("stored guardrail %r does not build; skipped", rule.name)
                continue
            usable.append(rule)
        engine = self.build([*self.configured, *usable])
        self._swap(engine)
        self.stored = usable
        self._version = version

    def _swap(self, engine: Guardrails | None) -> None:
        old, self._engine = self._engine, engine
        if old is not None:
            self._retired.append((time.monotonic(), old))

    async def follow(self, versions: Mapping[str, str]) -> None:
        """Follow changes made by other replicas (`versions`: the meta values read just now; a moved
        `guardrails_version` reloads the rules); close replaced engines once no call can still be using them."""
        try:
            if versions.get(VERSION_KEY, "0") != self._version:
                await self.apply()
            await self._close_retired(time.monotonic() - RETIRE_AFTER_S)
        except Exception:
            logger.exception("following guardrail changes failed")

    async def _close_retired(self, before: float) -> None:
        due = [g for t, g in self._retired if t <= before]
        self._retired = [(t, g) for t, g in self._retired if t > before]
        for engine in due:
            await engine.aclose()

    async def aclose(self) -> None:
        """Close the engine in force and every replaced one."""
        await self._close_retired(float("inf"))
        if self._engine is not None:
            await self._engine.aclose()
            self._engine = None

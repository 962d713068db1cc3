"""Fixtures for the guardrail and pinning end-to-end tests: admin and audit keys, the fake provider's key."""

from __future__ import annotations

import pytest

from tests.guardrails_e2e.harness import ADMIN, AUDIT_KEY, PROVIDER_KEY


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", AUDIT_KEY)
    monkeypatch.setenv("E2E_PROVIDER_KEY", PROVIDER_KEY)
    for name in ("AGENTHUB_MASTER_KEY", "AGENTHUB_DATABASE_URL", "AGENTHUB_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)

"""Fixtures for the list-change and pagination tests: a bootstrap admin token and an audit key in the environment
(the tests change grants, servers and pins through the admin API)."""

from __future__ import annotations

import pytest

ADMIN = "bootstrap-admin-token-mcp-lists-0123456789"
AUDIT_KEY = "audit-key-mcp-lists-0123456789abcdef0123456789ab"


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", AUDIT_KEY)
    monkeypatch.delenv("AGENTHUB_MASTER_KEY", raising=False)
    monkeypatch.delenv("AGENTHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTHUB_REDIS_URL", raising=False)

"""Fixtures for the console tests: a bootstrap admin token and an audit key in the environment."""

from __future__ import annotations

import pytest

from tests.admin.conftest import ADMIN, AUDIT_KEY


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", AUDIT_KEY)
    monkeypatch.delenv("AGENTHUB_MASTER_KEY", raising=False)
    monkeypatch.delenv("AGENTHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTHUB_REDIS_URL", raising=False)

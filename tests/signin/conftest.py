"""Fixtures for the sign-in tests: a hub with `[sign_in]` in front of the real `oidc-provider` (the IdP the admin
login tests use), and a scripted browser."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTHUB_MASTER_KEY", raising=False)
    monkeypatch.delenv("AGENTHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTHUB_REDIS_URL", raising=False)

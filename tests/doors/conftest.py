from __future__ import annotations

import pytest

from tests.doors.harness import ENV


@pytest.fixture(autouse=True)
def _provider_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

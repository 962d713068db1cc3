"""Fixtures of the scale-out tests: one PostgreSQL and one Redis per module."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.scaleout.cluster import Services, shared_services


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def services() -> Generator[Services]:
    with shared_services() as running:
        yield running

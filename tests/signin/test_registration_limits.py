"""The registration bounds hold across replicas sharing one database: attempts racing from two directories (two
engines on one database, as two hubs hold; SQLite and PostgreSQL) admit the per-source allowance once, and
registrations racing past the cap store `max_clients` clients in all. The window runs on an injected clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine, select

from hub.signin.clients import ClientDirectory
from hub.signin.store import SignInStore
from hub.store.signin_tables import SignInClientRow
from tests.admin.services import postgres_server
from tests.signin.helpers import CLIENT_REDIRECT
from tests.signin.test_client_documents import section

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Opens engines on one database the replicas share (closed after the test)."""
    engines: list[Engine] = []

    def engine(url: str) -> Callable[[], Engine]:
        def open_one() -> Engine:
            engines.append(create_engine(url))
            return engines[-1]

        return open_one

    try:
        if request.param == "sqlite":
            yield engine(f"sqlite:///{tmp_path / 'signin.db'}")
            return
        with postgres_server() as url:
            yield engine(url)
    finally:
        for opened in engines:
            opened.dispose()


def replicas(
    database: Callable[[], Engine], now: list[float], **overrides: object
) -> tuple[ClientDirectory, ClientDirectory]:
    def one() -> ClientDirectory:
        store = SignInStore(database())
        return ClientDirectory(section(**overrides), store, clock=lambda: now[0])

    return one(), one()


async def test_racing_attempts_over_two_replicas_admit_the_allowance_once(database: Callable[[], Engine]) -> None:
    now = [1_700_000_000.0]
    a, b = replicas(database, now, registrations_per_source=5)
    admitted: list[bool] = []

    async def attempt(directory: ClientDirectory, source: str) -> None:
        admitted.append(await directory.admit_registration(source))

    async with anyio.create_task_group() as tg:
        for i in range(16):
            tg.start_soon(attempt, (a, b)[i % 2], "10.0.0.7")
    assert sorted(admitted) == [False] * 11 + [True] * 5
    assert await b.admit_registration("10.0.0.8")  # another source has its own allowance
    assert not await a.admit_registration("10.0.0.7")
    now[0] += 3601  # the window moved past every attempt
    assert await a.admit_registration("10.0.0.7")


async def test_racing_registrations_over_two_replicas_stop_at_the_cap(database: Callable[[], Engine]) -> None:
    now = [1_700_000_000.0]
    a, b = replicas(database, now, max_clients=3)
    outcomes: list[str] = []

    async def register(directory: ClientDirectory, client_id: str) -> None:
        client = OAuthClientInformationFull(client_id=client_id, redirect_uris=[AnyUrl(CLIENT_REDIRECT)])
        try:
            await directory.register(client, "10.0.0.7")
        except RegistrationError as exc:
            outcomes.append(exc.error_description or "")
        else:
            outcomes.append("stored")

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(register, (a, b)[i % 2], f"client-{i}")
    assert sorted(outcomes) == ["stored"] * 3 + ["this hub accepts no more client registrations"] * 7
    with Session(database()) as s:
        assert len(s.exec(select(SignInClientRow)).all()) == 3

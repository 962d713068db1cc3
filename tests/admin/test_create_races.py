"""Creating a name twice is a 409 even when two creates race: the database's unique constraint backs the admin
API's pre-check, so the writer that loses gets the same conflict instead of a 500 or a silent overwrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from hub.store.admin_tables import AdminStore, CustomerRow, now_utc
from hub.store.tables import DuplicateName
from tests.admin.helpers import admin_client
from tests.hub.harness import base_config, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("/api/v1/customers", {"name": "acme"}, "a customer named 'acme' exists already"),
    ("/api/v1/teams", {"name": "platform"}, "a team named 'platform' exists already"),
    ("/api/v1/roles", {"name": "auditor", "permissions": ["audit:read"]}, "a role named 'auditor' exists already"),
    (
        "/api/v1/servers",
        {"name": "extra", "transport": "stdio", "command": "agenthub-no-such-command", "enabled": False},
        "a server named 'extra' exists already",
    ),
]


class BlindStore:
    """The admin store whose name look-ups always miss, as the pre-check of a create that lost a race sees it."""

    def __init__(self, inner: AdminStore) -> None:
        self._inner = inner

    def get_customer(self, name: str) -> None:
        return None

    def get_team(self, name: str) -> None:
        return None

    def get_role(self, name: str) -> None:
        return None

    def get_server(self, name: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def assert_conflict(response: httpx2.Response, message: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == message


async def test_a_create_whose_pre_check_missed_is_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as api:
        control = hub.hub.control
        assert control is not None
        store = control.store
        monkeypatch.setattr(control, "store", BlindStore(store))
        for path, body, message in CREATES:
            assert (await api.post(path, json=body)).status_code == 201, path
            assert_conflict(await api.post(path, json=body), message)
        # The first create stands: the second neither replaced it nor left a half-written row.
        assert [c.name for c in store.customers()] == ["acme"]
        assert [t.name for t in store.teams()] == ["platform"]
        assert [r.name for r in store.roles()] == ["auditor"]
        assert [s.name for s in store.servers()] == ["extra"]


async def test_concurrent_creates_of_one_name_give_one_201_and_409s(tmp_path: Path) -> None:
    bodies = [*((path, body) for path, body, _ in CREATES), ("/api/v1/keys", {"name": "ci", "tools": ["*"]})]
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as api:

        async def create(path: str, body: dict[str, Any], statuses: list[int]) -> None:
            statuses.append((await api.post(path, json=body)).status_code)

        for path, body in bodies:
            statuses: list[int] = []
            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for _ in range(6):
                        tg.start_soon(create, path, body, statuses)
            assert sorted(statuses) == [201, 409, 409, 409, 409, 409], (path, statuses)


def test_the_store_refuses_a_second_row_with_the_same_name(tmp_path: Path) -> None:
    from sqlmodel import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    store = AdminStore(engine)
    now = now_utc()
    store.create(CustomerRow(name="acme", created_at=now, updated_at=now))
    with pytest.raises(DuplicateName, match="a customer named 'acme' exists already"):
        store.create(CustomerRow(name="acme", created_at=now, updated_at=now))
    assert [c.name for c in store.customers()] == ["acme"]
    engine.dispose()

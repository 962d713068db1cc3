"""Every admin operation that writes records a change in the change log, so other processes follow it: the test
walks the admin API's route table (an operation added without a request here fails it) and makes each write."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hub.doors.admin.ops import OPERATIONS
from hub.store.changes import changes_after, newest_change
from tests.admin.helpers import admin_client
from tests.admin.test_scope import OUTSIDE, _setup
from tests.hub.harness import base_config, fixture_stdio, running_hub
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REFUSED = {
    ("POST", "/api/v1/servers/{name}/auth/login"): 400,
    ("POST", "/api/v1/servers/{name}/auth/logout"): 400,
    ("DELETE", "/api/v1/users/{user}/tokens"): 404,
}
"""Writes this hub cannot make (the server has no OAuth, no one signs in): refused, they must record nothing."""

LAST = [("DELETE", "/api/v1/servers/{name}/pins"), ("DELETE", "/api/v1/servers/{name}")]
"""Run after every other write: the other operations on the run-time server `extra` need it."""


async def test_every_admin_write_records_a_change_and_a_refused_one_records_none(tmp_path: Path) -> None:
    writes = [(op.method, op.path) for op in OPERATIONS if op.method not in ("GET", "HEAD") and op.action != "read"]
    assert set(writes) <= set(OUTSIDE), "every admin write needs a request in tests/admin/test_scope.OUTSIDE"
    ordered = [w for w in writes if w not in LAST] + LAST
    assert sorted(ordered) == sorted(writes)
    kinds: dict[tuple[str, str], list[str]] = {}
    async with running_hub(base_config({"fixture": fixture_stdio()}, keys=[]), tmp_path) as hub:
        engine = hub.hub.store.engine
        async with admin_client(hub.base) as admin:
            other_token = await _setup(admin, hub.hub)
            for method, route in ordered:
                path, body = OUTSIDE[(method, route)]
                extra = hub.hub.registry.upstreams.get("extra")
                if extra is not None:  # a replaced server restarts; its tools can be approved once it is back
                    with anyio.fail_after(PATIENCE):
                        assert await extra.wait_ready(PATIENCE)
                before = newest_change(engine)
                response = await admin.request(method, path.format(other_token=other_token), json=body)
                recorded = [kind for _id, kind, _origin in changes_after(engine, before)]
                if (method, route) in REFUSED:
                    assert response.status_code == REFUSED[(method, route)], (method, route, response.text)
                    assert recorded == [], (method, route, "a refused write recorded a change")
                    continue
                assert response.is_success, (method, route, response.text)
                kinds[(method, route)] = recorded
    silent = [write for write, recorded in kinds.items() if not recorded]
    assert silent == [], f"admin writes that record no change: {silent}"
    assert kinds[("POST", "/api/v1/keys")] == ["keys"]
    assert kinds[("PATCH", "/api/v1/teams/{name}")] == ["governance"]
    assert kinds[("PUT", "/api/v1/servers/{name}")] == ["servers"]
    assert kinds[("POST", "/api/v1/servers/{name}/approve")] == ["pins"]
    assert kinds[("DELETE", "/api/v1/guardrails/{name}")] == ["guardrails"]
    assert kinds[("POST", "/api/v1/roles")] == ["roles"]
    assert kinds[("POST", "/api/v1/usage/{kind}/{name}/reset")] == ["usage"]
    assert kinds[("PUT", "/api/v1/virtual-servers/{name}")] == ["virtual_servers"]

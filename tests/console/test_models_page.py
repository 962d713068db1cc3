"""The LLM routing table: `GET /api/v1/models` against a running hub in front of a fake provider (deployments,
weights, a deployment cooling down after a failure, no secrets, RBAC) and the console's `/ui/models` page."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from hub.doors.admin.models import routing_view
from llm.config import LLMConfig
from llm.health import CircuitBreaker
from llm.result import Hop
from llm.testing import FakeScript, Fault, openai_app, serve
from tests.admin.helpers import admin_client, token_with
from tests.console.helpers import browser_like, sign_in
from tests.hub.harness import ALICE, RunningHub, base_config, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

MAIN, SPARE = "sk-models-main-0001", "sk-models-spare-0002"
MODELS = "/api/v1/models"


@pytest.fixture(autouse=True)
def provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_MODELS_MAIN", MAIN)
    monkeypatch.setenv("T_MODELS_SPARE", SPARE)


@asynccontextmanager
async def hub_with_provider(tmp_path: Path) -> AsyncGenerator[RunningHub]:
    """A hub whose one provider (a fake that answers every request with a 500) serves two aliases: `fast`, pinned
    to key `main`, and `smart`, on either key, with `fast` as its fallback."""
    script = FakeScript(default=Fault.http(500))
    async with serve(openai_app(script, keys=[MAIN, SPARE])) as base:
        config: dict[str, Any] = {
            **base_config({}, keys=[{"name": "alice", "secret": ALICE, "models": ["*"]}]),
            "providers": {
                "openai": {
                    "kind": "openai", "base_url": f"{base}/v1", "models": ["gpt-4o-mini", "gpt-4o"],
                    "keys": [{"name": "main", "secret": "env:T_MODELS_MAIN"},
                             {"name": "spare", "secret": "env:T_MODELS_SPARE"}],
                },
            },
            "models": {
                "fast": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini", "weight": 3, "key": "main"}]},
                "smart": {"deployments": [{"provider": "openai", "model": "gpt-4o", "weight": 1}],
                          "fallbacks": ["fast"]},
            },
            "routing": {"max_retries": 0, "cooldown_failures": 1, "cooldown_seconds": 600},
        }  # fmt: skip
        async with running_hub(config, tmp_path) as hub:
            yield hub


async def _fail_fast(hub: RunningHub) -> None:
    """One chat request for `fast`: the provider's 500 opens the circuit of (openai, gpt-4o-mini, main)."""
    client = openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0, timeout=PATIENCE)
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    await client.close()


async def test_models_lists_deployments_and_the_one_cooling_down_without_secrets(tmp_path: Path) -> None:
    async with hub_with_provider(tmp_path) as hub, admin_client(hub.base) as admin:
        ready = await admin.get(MODELS)
        assert ready.status_code == 200, ready.text
        assert all(not d["cooling_down"] for a in ready.json()["data"] for d in a["deployments"])
        await _fail_fast(hub)
        answer = await admin.get(MODELS)
        assert answer.status_code == 200, answer.text
        for secret in (MAIN, SPARE, "env:T_MODELS", "127.0.0.1"):
            assert secret not in answer.text
        found = answer.json()
        aliases = {a["alias"]: a for a in found["data"]}
        assert list(aliases) == ["fast", "smart"]
        (fast,) = aliases["fast"]["deployments"]
        assert (fast["provider"], fast["model"], fast["weight"], fast["key"]) == ("openai", "gpt-4o-mini", 3, "main")
        assert fast["cooling_down"] is True and fast["failures"] == 1
        assert fast["cooling_until"] is not None and datetime.fromisoformat(fast["cooling_until"]).tzinfo is not None
        assert [(k["name"], k["cooling_down"]) for k in fast["keys"]] == [("main", True)]
        (smart,) = aliases["smart"]["deployments"]
        assert (smart["model"], smart["key"], smart["cooling_down"], smart["failures"]) == ("gpt-4o", None, False, 0)
        assert [k["name"] for k in smart["keys"]] == ["main", "spare"]
        assert aliases["smart"]["fallbacks"] == ["fast"]
        assert found["providers"] == [
            {"name": "openai", "kind": "openai", "keys": ["main", "spare"], "models": ["gpt-4o-mini", "gpt-4o"]}
        ]
        assert found["other_hops"] == []


async def test_models_needs_the_permission_to_read_servers(tmp_path: Path) -> None:
    async with hub_with_provider(tmp_path) as hub, admin_client(hub.base) as admin:
        async with httpx2.AsyncClient(base_url=hub.base, timeout=20) as anonymous:
            assert (await anonymous.get(MODELS)).status_code == 401
        keys_only = await token_with(admin, "keys-only", ["keys:read"])
        async with admin_client(hub.base, keys_only) as caller:
            assert (await caller.get(MODELS)).status_code == 403
        viewer = (await admin.post("/api/v1/tokens", json={"name": "v", "roles": ["viewer"]})).json()["secret"]
        async with admin_client(hub.base, viewer) as caller:
            assert (await caller.get(MODELS)).status_code == 200


async def test_a_hub_without_providers_lists_no_models(tmp_path: Path) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        answer = await admin.get(MODELS)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"data": [], "providers": [], "other_hops": []}


async def test_the_console_page_shows_the_routing_table(tmp_path: Path) -> None:
    async with hub_with_provider(tmp_path) as hub:
        await _fail_fast(hub)
        async with browser_like(hub.base) as http:
            assert (await sign_in(http)).status_code == 303
            page = await http.get("/ui/models")
            assert page.status_code == 200, page.text
            assert 'href="/ui/models" aria-current="page"' in page.text
            assert '<td rowspan="1">fast</td>' in page.text and '<td rowspan="1">smart</td>' in page.text
            assert "cooling down until" in page.text and "gpt-4o-mini" in page.text and "gpt-4o" in page.text
            assert "main, spare" in page.text
            for secret in (MAIN, SPARE, "env:T_MODELS"):
                assert secret not in page.text
        async with admin_client(hub.base) as admin:
            keys_only = await token_with(admin, "keys-only", ["keys:read"])
        async with browser_like(hub.base) as http:
            assert (await sign_in(http, keys_only)).status_code == 303
            refused = await http.get("/ui/models")
            assert refused.status_code == 403 and "gpt-4o" not in refused.text


def test_the_breaker_reports_failures_and_the_cooldown_left_on_its_clock() -> None:
    now = [100.0]
    breaker = CircuitBreaker(failures=2, cooldown=30.0, clock=lambda: now[0])
    hop = Hop("openai", "gpt-4o", "main")
    breaker.failure(hop)
    assert breaker.snapshot() == {hop: (1, 0.0)}
    breaker.failure(hop)
    now[0] = 110.0
    assert breaker.snapshot() == {hop: (2, 20.0)}
    now[0] = 131.0
    assert breaker.snapshot() == {hop: (2, 0.0)}  # half-open: failures kept, no longer cooling down
    breaker.success(hop)
    assert breaker.snapshot() == {}


def test_the_routing_view_dates_a_cooldown_from_the_time_it_is_given() -> None:
    config = LLMConfig.model_validate(
        {"providers": {"local": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1"}},
         "models": {"m": {"deployments": [{"provider": "local", "model": "x"}]}}}
    )  # fmt: skip
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    health = {Hop("local", "x", "default"): (3, 90.0), Hop("local", "y", "default"): (1, 0.0)}
    view = routing_view(config, health, now)
    (deployment,) = view["data"][0]["deployments"]
    assert deployment["cooling_down"] is True and deployment["failures"] == 3
    assert deployment["cooling_until"] == "2026-01-02T03:05:35+00:00"
    assert view["other_hops"] == [
        {"provider": "local", "model": "y", "name": "default", "failures": 1, "cooling_down": False,
         "cooling_until": None}
    ]  # fmt: skip
    assert view["providers"] == [{"name": "local", "kind": "openai-compatible", "keys": ["default"], "models": []}]
    assert "127.0.0.1" not in str(view)

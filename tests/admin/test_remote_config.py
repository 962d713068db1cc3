"""What the admin API may make the hub read or reach: secret references only from the operator's allow-list
(never the hub's own `AGENTHUB_*` variables), remote endpoints only past the SSRF guard, and literal secrets in
run-time server configurations never shown or audited whole."""

from __future__ import annotations

import json
import secrets
import string
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from hub.audit.scrub import REDACTED, scrub
from tests.admin.helpers import admin_client, token_with
from tests.hub.harness import RunningHub, base_config, running_hub

pytestmark = pytest.mark.anyio


def github_pat() -> str:
    """A token shaped like a GitHub personal access token (`ghp_` and 36 random letters and digits)."""
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


async def _stored_servers(hub: RunningHub) -> dict[str, dict[str, Any]]:
    """The run-time servers in the database (those that could not start too), by name."""
    control = hub.hub.control
    assert control is not None
    rows = await anyio.to_thread.run_sync(control.store.servers)
    return {row.name: json.loads(row.config) for row in rows}


def _shield(name: str, endpoint: str, api_key: str) -> dict[str, Any]:
    return {"name": name, "kind": "azure", "endpoint": endpoint, "api_key": api_key}


def _http(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": "http", "url": url, "enabled": False, **extra}


def _stdio(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": "stdio", "command": sys.executable, "enabled": False, **extra}


def _oauth(**urls: str) -> dict[str, Any]:
    return {"type": "oauth2", "grant": "client_credentials", "client_id": "hub",
            "client_secret": "env:GUARDRAIL_KEY", **urls}  # fmt: skip


Case = tuple[str, str, str, dict[str, Any], int]
"""(what, method, path, body, expected status)."""

LOOPBACK_MCP = "http://127.0.0.1:9/mcp"


def _reference_rules(hub: str) -> list[Case]:
    """Guardrails whose credential is a reference; `hub` is the hub's own address (the endpoint an attacker picks)."""
    rules, own = "/api/v1/guardrails", "env:AGENTHUB_ADMIN_TOKEN"
    return [
        ("bootstrap token to the hub itself", "POST", rules, _shield("s1", hub, own), 400),
        ("audit key", "POST", rules, _shield("s2", hub, "env:AGENTHUB_AUDIT_KEY"), 400),
        ("not listed", "POST", rules, _shield("s3", hub, "env:HOME"), 400),
        ("file outside", "POST", rules, _shield("s4", hub, "file:/etc/shadow"), 400),
        ("file escaping", "POST", rules, _shield("s5", hub, "file:/run/secrets/../../etc/shadow"), 400),
        ("relative file", "POST", rules, _shield("s5", hub, "file:secrets/key"), 400),
        ("listed", "POST", rules, _shield("s6", "http://127.0.0.1:9", "env:GUARDRAIL_KEY"), 201),
        ("replaced with the hub's", "PUT", f"{rules}/s6", _shield("s6", "http://127.0.0.1:9", own), 400),
    ]


REFERENCE_SERVERS: list[Case] = [
    ("stdio env", "POST", "/api/v1/servers", _stdio("a", env={"MODE": "env:AGENTHUB_ADMIN_TOKEN"}), 400),
    ("header", "POST", "/api/v1/servers", _http("b", LOOPBACK_MCP, headers={"X-Key": "env:PATH"}), 400),
    ("auth header", "POST", "/api/v1/servers",
     _http("c", LOOPBACK_MCP, auth={"type": "headers", "headers": {"X-Key": "file:/run/secrets/../../etc/passwd"}}),
     400),
    ("client secret", "POST", "/api/v1/servers",
     _http("d", LOOPBACK_MCP, auth={**_oauth(token_url="http://127.0.0.1:9/token"),
                                    "client_secret": "env:AGENTHUB_MASTER_KEY"}), 400),
    ("listed env", "POST", "/api/v1/servers", _stdio("e", env={"MODE": "env:GUARDRAIL_KEY"}), 201),
    ("listed file", "POST", "/api/v1/servers", _http("f", LOOPBACK_MCP, headers={"X-Key": "file:/run/secrets/tickets"}),
     201),
    ("replaced with the hub's", "PUT", "/api/v1/servers/e", _stdio("e", env={"MODE": "env:AGENTHUB_AUDIT_KEY"}), 400),
]  # fmt: skip
"""Run-time servers whose env, headers or auth secrets are references (made by the bootstrap admin)."""

ENDPOINTS: list[Case] = [
    ("plain http to loopback", "POST", "/api/v1/servers", _http("a", LOOPBACK_MCP), 400),
    ("localhost", "POST", "/api/v1/servers", _http("a", "https://localhost:9/mcp"), 400),
    ("private", "POST", "/api/v1/servers", _http("a", "https://10.1.2.3/mcp"), 400),
    ("metadata", "POST", "/api/v1/servers", _http("a", "https://169.254.169.254/latest"), 400),
    ("mapped private", "POST", "/api/v1/servers", _http("a", "https://[::ffff:192.168.1.1]/mcp"), 400),
    ("sse private", "POST", "/api/v1/servers", {**_http("a", "https://192.168.1.1/sse"), "transport": "sse"}, 400),
    ("token url", "POST", "/api/v1/servers",
     _http("a", "https://8.8.8.8/mcp", auth=_oauth(token_url="https://192.168.0.10/token")), 400),
    ("issuer", "POST", "/api/v1/servers", _http("a", "https://8.8.8.8/mcp", auth=_oauth(issuer="http://127.0.0.1:9")),
     400),
    ("guardrail endpoint", "POST", "/api/v1/guardrails", _shield("g", "https://10.0.0.5", "env:GUARDRAIL_KEY"), 400),
    ("public", "POST", "/api/v1/servers",
     _http("b", "https://8.8.8.8/mcp", auth=_oauth(token_url="https://8.8.4.4/token")), 201),
    ("listed origin", "POST", "/api/v1/servers", _http("c", "https://10.9.8.7/mcp"), 201),
    ("listed guardrail", "POST", "/api/v1/guardrails", _shield("g", "https://10.9.8.7", "env:GUARDRAIL_KEY"), 201),
    ("moved to a private address", "PUT", "/api/v1/servers/b", _http("b", "https://10.1.2.3/mcp"), 400),
]  # fmt: skip
"""Endpoints given through the API, with `[admin] allowed_endpoints = ["https://10.9.8.*"]`."""


async def _ask(api: httpx2.AsyncClient, cases: list[Case]) -> dict[str, httpx2.Response]:
    return {what: await api.request(method, path, json=body) for what, method, path, body, _status in cases}


def _statuses(answers: dict[str, httpx2.Response]) -> dict[str, int]:
    return {what: answer.status_code for what, answer in answers.items()}


async def test_secret_references_through_the_api_must_be_allow_listed_and_never_name_the_hubs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_KEY", "vendor-key-from-the-environment")
    monkeypatch.setenv("CONFIG_SHIELD_KEY", "configured-by-the-operator")
    config = base_config({}, keys=[])
    config["admin"] = {
        "allowed_secret_refs": ["env:GUARDRAIL_*", "env:AGENTHUB_ADMIN_TOKEN", "file:/run/secrets/*"],
        "allowed_endpoints": ["http://127.0.0.1:*"],
    }
    config["guardrails"] = [_shield("configured", "http://127.0.0.1:9", "env:CONFIG_SHIELD_KEY")]
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as admin:
        guard = await token_with(admin, "guard", ["guardrails:*"])
        async with admin_client(hub.base, guard) as g:
            rules = await _ask(g, _reference_rules(hub.base))
        servers = await _ask(admin, REFERENCE_SERVERS)
        listed = {g["name"] for g in (await admin.get("/api/v1/guardrails")).json()["data"]}
        stored = await _stored_servers(hub)
    assert _statuses(rules) == {what: status for what, *_, status in _reference_rules(hub.base)}
    assert _statuses(servers) == {what: status for what, *_, status in REFERENCE_SERVERS}
    for answer in [*rules.values(), *servers.values()]:
        if answer.status_code == 400:
            assert "allowed_secret_refs" in answer.json()["error"]["message"], answer.text
    assert "AGENTHUB_" in rules["bootstrap token to the hub itself"].json()["error"]["message"]
    assert listed == {"configured", "s6"} and set(stored) == {"e", "f"}
    assert stored["e"]["env"] == {"MODE": "env:GUARDRAIL_KEY"}


async def test_remote_endpoints_through_the_api_pass_the_ssrf_guard_unless_the_operator_lists_their_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_KEY", "vendor-key-from-the-environment")
    config = base_config({}, keys=[])
    config["admin"] = {"allowed_secret_refs": ["env:GUARDRAIL_KEY"], "allowed_endpoints": ["https://10.9.8.*"]}
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as admin:
        answers = await _ask(admin, ENDPOINTS)
        stored = {name: config["url"] for name, config in (await _stored_servers(hub)).items()}
    assert _statuses(answers) == {what: status for what, *_, status in ENDPOINTS}
    for answer in answers.values():
        if answer.status_code == 400:
            assert "allowed_endpoints" in answer.json()["error"]["message"], answer.text
    assert stored == {"b": "https://8.8.8.8/mcp", "c": "https://10.9.8.7/mcp"}


async def test_insecure_loopback_still_allows_plain_http_to_loopback(tmp_path: Path) -> None:
    async with (
        running_hub(base_config({}, keys=[], insecure_loopback=True), tmp_path) as hub,
        admin_client(hub.base) as admin,
    ):
        loopback = await admin.post("/api/v1/servers", json=_http("a", "http://127.0.0.1:9/mcp"))
        private = await admin.post("/api/v1/servers", json=_http("b", "http://10.1.2.3/mcp"))
    assert loopback.status_code == 201, loopback.text
    assert private.status_code == 400


def test_secret_values_are_redacted_whatever_their_key_is_called() -> None:
    pat = github_pat()
    scrubbed = scrub({"args": ["--mode", "fast", pat, f"--token={pat}"], "env": {"GREETING": pat}, "note": "fine"})
    assert scrubbed == {
        "args": ["--mode", "fast", REDACTED, f"--token={REDACTED}"], "env": {"GREETING": REDACTED}, "note": "fine"
    }  # fmt: skip


async def test_literal_secrets_of_run_time_servers_are_neither_shown_nor_audited(tmp_path: Path) -> None:
    first, second = github_pat(), github_pat()
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        created = await admin.post(
            "/api/v1/servers", json=_stdio("tool", args=["--mode", first], env={"GREETING": first})
        )
        viewer = (await admin.post("/api/v1/tokens", json={"name": "looker", "roles": ["viewer"]})).json()["secret"]
        async with admin_client(hub.base, viewer) as v:
            shown = await v.get("/api/v1/servers/tool")
        replaced = await admin.put("/api/v1/servers/tool", json=_stdio("tool", args=[f"--token={second}"]))
        entries = (await admin.get("/api/v1/audit")).json()["data"]
        export = (await admin.get("/api/v1/audit/export", params={"format": "jsonl"})).text
    assert created.status_code == 201 and replaced.status_code == 200
    assert shown.status_code == 200
    assert shown.json()["config"]["args"] == ["--mode", REDACTED] and shown.json()["config"]["env"] == {
        "GREETING": REDACTED
    }
    for text in (created.text, shown.text, replaced.text, str(entries), export):
        assert first not in text and second not in text
    update = next(e for e in entries if e["action"] == "server.update")
    assert update["before"]["args"] == ["--mode", REDACTED] and update["after"]["args"] == [f"--token={REDACTED}"]

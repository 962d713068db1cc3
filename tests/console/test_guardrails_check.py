"""Trying a text on the guardrails in force: `POST /api/v1/guardrails/check` against a running hub (verdicts,
scoping as the stage scopes a call, bad input, RBAC, audit) and the console's form on the guardrails page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.admin.helpers import admin_client, token_with
from tests.console.helpers import browser_like, csrf_of, sign_in
from tests.hub.harness import base_config, running_hub

pytestmark = pytest.mark.anyio

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
"""A GitHub token's shape: the secrets rule finds and redacts it."""

CHECK = "/api/v1/guardrails/check"


def config() -> dict[str, Any]:
    return {
        **base_config({}, keys=[]),
        "guardrails": [
            {"name": "no-secrets", "kind": "secrets", "action": "redact", "apply_to": "input"},
            {"name": "codename", "kind": "regex", "pattern": r"(?i)project\s+falcon", "apply_to": "output",
             "doors": ["mcp"]},
        ],
    }  # fmt: skip


async def _audit_head(admin: httpx2.AsyncClient) -> int:
    settings = await admin.get("/api/v1/audit/settings")
    assert settings.status_code == 200, settings.text
    head: int = settings.json()["head_seq"]
    return head


async def test_the_check_finds_and_redacts_a_secret_and_passes_a_clean_text(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as hub, admin_client(hub.base) as admin:
        head = await _audit_head(admin)
        found = await admin.post(CHECK, json={"text": f"deploy with {TOKEN} please", "direction": "input"})
        assert found.status_code == 200, found.text
        verdict = found.json()
        assert verdict["decision"] == "redact"
        assert TOKEN not in found.text
        assert verdict["text"] == "deploy with [REDACTED:github-pat] please"
        assert [(f["guardrail"], f["rule"], f["action"]) for f in verdict["findings"]] == [
            ("no-secrets", "github-pat", "redact")
        ]
        assert verdict["applied"] == ["no-secrets"]
        assert verdict["scope"] == {"direction": "input", "door": "llm", "operation": "llm.chat", "key": None,
                                    "team": None, "server": None}  # fmt: skip

        clean = await admin.post(CHECK, json={"text": "hello there"})
        assert clean.status_code == 200, clean.text
        assert clean.json()["decision"] == "allow" and clean.json()["findings"] == []
        assert clean.json()["text"] == "hello there"
        # A read: no audit entry, as for `GET /guardrails`.
        assert await _audit_head(admin) == head
        # Not a call: the request log holds nothing once flushed.
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        logged = await admin.get("/api/v1/logs")
        assert logged.status_code == 200 and logged.json()["data"] == [], logged.text


async def test_the_check_scopes_the_rules_as_the_stage_scopes_a_call(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as hub, admin_client(hub.base) as admin:
        text = "the plan for Project Falcon"
        on_mcp = await admin.post(CHECK, json={"text": text, "direction": "output", "operation": "mcp.tool"})
        assert on_mcp.status_code == 200, on_mcp.text
        assert on_mcp.json()["decision"] == "block"
        assert on_mcp.json()["blocked_by"] == ["codename"]
        assert "codename" in on_mcp.json()["message"] and "Falcon" not in on_mcp.json()["message"]
        assert on_mcp.json()["scope"]["door"] == "mcp"
        on_llm = await admin.post(CHECK, json={"text": text, "direction": "output", "door": "llm"})
        assert on_llm.json()["decision"] == "allow" and on_llm.json()["applied"] == []
        inbound = await admin.post(CHECK, json={"text": text, "direction": "input", "door": "mcp"})
        assert inbound.json()["decision"] == "allow"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"direction": "input"}, "text"),
    ({"text": "x", "direction": "sideways"}, "direction"),
    ({"text": "x", "door": "smtp"}, "door"),
    ({"text": "x", "door": "llm", "operation": "mcp.tool"}, "operation"),
    ({"text": "x", "door": "llm", "server": "fixture"}, "server"),
    ({"text": "x", "surprise": True}, "surprise"),
    ({"text": 5}, "text"),
]
"""Bodies the check refuses, and the field its message names."""


async def test_bad_input_is_a_400_naming_the_field(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as hub, admin_client(hub.base) as admin:
        for body, field in BAD:
            answer = await admin.post(CHECK, json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert field in answer.json()["error"]["message"], (body, answer.text)
        not_json = await admin.post(CHECK, content=b"{nope", headers={"content-type": "application/json"})
        assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]


async def test_the_check_needs_the_permission_to_read_guardrails(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as hub, admin_client(hub.base) as admin:
        async with httpx2.AsyncClient(base_url=hub.base, timeout=20) as anonymous:
            assert (await anonymous.post(CHECK, json={"text": TOKEN})).status_code == 401
        keys_only = await token_with(admin, "keys-only", ["keys:read"])
        head = await _audit_head(admin)
        async with admin_client(hub.base, keys_only) as caller:
            refused = await caller.post(CHECK, json={"text": TOKEN})
        assert refused.status_code == 403, refused.text
        assert TOKEN not in refused.text
        entries = (await admin.get("/api/v1/audit", params={"after": head})).json()["data"]
        assert [(e["action"], e["outcome"]) for e in entries] == [("guardrails.read", "denied")]
        viewer = (await admin.post("/api/v1/tokens", json={"name": "v", "roles": ["viewer"]})).json()["secret"]
        async with admin_client(hub.base, viewer) as caller:
            allowed = await caller.post(CHECK, json={"text": TOKEN})
        assert allowed.status_code == 200 and allowed.json()["decision"] == "redact"


async def test_the_console_form_shows_the_verdict_escaped(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, browser_like(running.base) as http:
        assert (await sign_in(http)).status_code == 303
        page = await http.get("/ui/guardrails")
        assert page.status_code == 200 and 'action="/ui/guardrails/check"' in page.text
        csrf = csrf_of(page.text)
        text = f"<script>alert(1)</script> {TOKEN}"
        answer = await http.post("/ui/guardrails/check", data={"csrf": csrf, "text": text, "direction": "input"})
        assert answer.status_code == 200, answer.text
        assert "Verdict: <span" in answer.text and ">redact</span>" in answer.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt; [REDACTED:github-pat]" in answer.text
        assert "<script>alert(1)" not in answer.text
        assert "github-pat" in answer.text

        blocked = await http.post(
            "/ui/guardrails/check",
            data={"csrf": csrf, "text": "Project Falcon", "direction": "output", "door": "mcp", "operation": ""},
        )
        assert blocked.status_code == 200 and ">block</span>" in blocked.text and "codename" in blocked.text

        bad = await http.post("/ui/guardrails/check", data={"csrf": csrf, "text": "x", "direction": "sideways"})
        assert bad.status_code == 400 and 'role="alert"' in bad.text and "direction" in bad.text

        forged = await http.post("/ui/guardrails/check", data={"csrf": "forged", "text": TOKEN})
        assert forged.status_code == 403 and "CSRF" in forged.text and "REDACTED" not in forged.text


async def test_a_viewer_may_use_the_form_and_a_grant_without_guardrails_is_refused(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as running, admin_client(running.base) as admin:
        viewer = (await admin.post("/api/v1/tokens", json={"name": "v", "roles": ["viewer"]})).json()["secret"]
        keys_only = await token_with(admin, "keys-only", ["keys:read"])
        async with browser_like(running.base) as http:
            assert (await sign_in(http, viewer)).status_code == 303
            csrf = csrf_of((await http.get("/ui/guardrails")).text)
            answer = await http.post("/ui/guardrails/check", data={"csrf": csrf, "text": TOKEN})
            assert answer.status_code == 200 and "[REDACTED:github-pat]" in answer.text
        async with browser_like(running.base) as http:
            assert (await sign_in(http, keys_only)).status_code == 303
            csrf = csrf_of((await http.get("/ui/keys")).text)
            refused = await http.post("/ui/guardrails/check", data={"csrf": csrf, "text": TOKEN})
            assert refused.status_code == 403 and "REDACTED" not in refused.text


async def test_the_openapi_document_describes_the_check_and_the_routing_table(tmp_path: Path) -> None:
    async with running_hub(config(), tmp_path) as hub, httpx2.AsyncClient() as http:
        doc = (await http.get(hub.url("/api/v1/openapi.json"))).json()
    body = doc["paths"][CHECK]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CheckIn"}
    schema = doc["components"]["schemas"]["CheckIn"]
    assert schema["additionalProperties"] is False and schema["required"] == ["text"]
    assert "get" in doc["paths"]["/api/v1/models"]

"""Guardrails managed through the admin API: in force at once on the MCP door, stored across restarts, every change
and refusal audited; the config file's rules are listed but read-only; credentials only as references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.guardrails_e2e.harness import ADMIN, CODENAME, SECRET, Refused, e2e_hub, key

pytestmark = pytest.mark.anyio
CONFIG_RULE = {"name": "no-secrets", "kind": "secrets", "apply_to": "input"}
CODENAME_RULE = {"name": "codename", "kind": "regex", "pattern": r"(?i)project\s+falcon", "apply_to": "input"}
TEXT = f"ship {CODENAME} on friday"


def _admin(base: str, token: str = ADMIN) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=20)


async def _outcome(send: Any) -> str:
    try:
        return await send("alice", TEXT)
    except Refused as exc:
        return f"refused {exc.code}: {exc.message}"


async def test_rules_made_through_the_api_are_in_force_at_once_and_audited(tmp_path: Path) -> None:
    async with e2e_hub(tmp_path, [CONFIG_RULE], [key("alice")]) as hub, _admin(hub.base) as api:
        send = hub.client("mcp").send
        before = await _outcome(send)
        created = await api.post("/api/v1/guardrails", json=CODENAME_RULE)
        blocked = await _outcome(send)
        replaced = await api.put("/api/v1/guardrails/codename", json={**CODENAME_RULE, "action": "redact"})
        redacted = await _outcome(send)
        listed = (await api.get("/api/v1/guardrails")).json()["data"]
        one = (await api.get("/api/v1/guardrails/codename")).json()
    async with e2e_hub(tmp_path, [CONFIG_RULE], [key("alice")]) as hub, _admin(hub.base) as api:  # same database
        send = hub.client("mcp").send
        after_restart = await _outcome(send)
        deleted = await api.delete("/api/v1/guardrails/codename")
        after_delete = await _outcome(send)
        secret_still_blocked = await send("alice", "fine") == "fine" and await _outcome(
            lambda k, _t: send(k, f"token {SECRET}")
        )
        audit = (await api.get("/api/v1/audit")).json()["data"]
    assert before == TEXT
    assert created.status_code == 201 and created.json()["source"] == "api"
    assert blocked == "refused -32003: Request blocked by guardrail 'codename' (regex: codename)."
    assert replaced.status_code == 200 and redacted == "ship [REDACTED:codename] on friday"
    assert [(r["name"], r["source"]) for r in listed] == [("no-secrets", "config"), ("codename", "api")]
    assert one == {**CODENAME_RULE, "action": "redact", "source": "api"}
    assert after_restart == "ship [REDACTED:codename] on friday"
    assert deleted.status_code == 200 and after_delete == TEXT
    assert isinstance(secret_still_blocked, str) and "no-secrets" in secret_still_blocked
    changes = [(e["action"], e["resource_id"], e["outcome"]) for e in audit if e["resource_type"] == "guardrail"]
    assert changes == [
        ("guardrail.create", "codename", "success"),
        ("guardrail.update", "codename", "success"),
        ("guardrail.delete", "codename", "success"),
    ]
    update = next(e for e in audit if e["action"] == "guardrail.update")
    assert "action" not in update["before"] and update["after"]["action"] == "redact"


async def test_invalid_or_unsafe_rules_are_refused_and_the_refusals_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIELD_KEY", "shield-key-from-the-environment")
    literal = {"name": "shield", "kind": "azure", "endpoint": "http://127.0.0.1:9", "api_key": "literal-key-123"}
    unset = {**literal, "name": "unset", "api_key": "env:NO_SUCH_VARIABLE"}
    admin = {
        "allowed_secret_refs": ["env:SHIELD_KEY", "env:NO_SUCH_VARIABLE"],
        "allowed_endpoints": ["http://127.0.0.1:*"],
    }
    async with e2e_hub(tmp_path, [CONFIG_RULE], [key("alice")], admin=admin) as hub, _admin(hub.base) as api:
        token = (await api.post("/api/v1/tokens", json={"name": "looker", "roles": ["viewer"]})).json()["secret"]
        answers = {
            "literal credential": await api.post("/api/v1/guardrails", json=literal),
            "reference": await api.post("/api/v1/guardrails", json={**literal, "api_key": "env:SHIELD_KEY"}),
            "missing variable": await api.post("/api/v1/guardrails", json=unset),
            "not RE2": await api.post("/api/v1/guardrails", json={**CODENAME_RULE, "pattern": r"(?<=x)y"}),
            "unknown field": await api.post("/api/v1/guardrails", json={**CODENAME_RULE, "colour": "red"}),
            "foreign field": await api.post("/api/v1/guardrails", json={**CODENAME_RULE, "entities": ["email"]}),
            "config name": await api.post("/api/v1/guardrails", json={**CODENAME_RULE, "name": "no-secrets"}),
            "change config": await api.put("/api/v1/guardrails/no-secrets", json=CONFIG_RULE),
            "delete config": await api.delete("/api/v1/guardrails/no-secrets"),
            "unknown": await api.delete("/api/v1/guardrails/nope"),
            "name mismatch": await api.put("/api/v1/guardrails/shield", json=CODENAME_RULE),
        }
        async with _admin(hub.base, token) as viewer:
            viewer_list = await viewer.get("/api/v1/guardrails")
            viewer_create = await viewer.post("/api/v1/guardrails", json=CODENAME_RULE)
        shown = (await api.get("/api/v1/guardrails/shield")).json()
        audit = (await api.get("/api/v1/audit")).json()["data"]
    assert {name: r.status_code for name, r in answers.items()} == {
        "literal credential": 400,
        "reference": 201,
        "missing variable": 400,
        "not RE2": 400,
        "unknown field": 400,
        "foreign field": 400,
        "config name": 409,
        "change config": 409,
        "delete config": 409,
        "unknown": 404,
        "name mismatch": 400,
    }
    assert "reference" in answers["literal credential"].json()["error"]["message"]
    assert "literal-key-123" not in str(audit) and "shield-key-from-the-environment" not in str(audit)
    assert shown["api_key"] == "env:SHIELD_KEY"
    assert viewer_list.status_code == 200 and viewer_create.status_code == 403
    refusals = [(e["action"], e["outcome"]) for e in audit if e["outcome"] != "success"]
    assert ("guardrails.create", "denied") in refusals and ("guardrails.create", "failure") in refusals

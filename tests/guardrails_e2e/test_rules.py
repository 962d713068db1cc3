"""Every local rule type (secrets, PII, regex) with every action (block, redact, log) in both directions, through
every door: MCP (`mcp` SDK client), REST tool execution and the OpenAI-compatible LLM door.

Each rule is scoped to one key, so one hub serves all of a kind's cases: `block-in` blocks what the caller sends,
`block-out` what comes back, `redact-in` and `redact-out` redact, `log` only records.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.guardrails_e2e.harness import (
    CODENAME,
    DOORS,
    EMAIL,
    REFUSED_CODE,
    SECRET,
    DoorName,
    Refused,
    e2e_hub,
    key,
)

pytestmark = pytest.mark.anyio

KINDS: dict[str, tuple[dict[str, Any], str, str]] = {
    "secrets": ({"kind": "secrets"}, SECRET, "[REDACTED:github-pat]"),
    "pii": ({"kind": "pii", "entities": ["email"]}, EMAIL, "[REDACTED:email]"),
    "regex": (
        {"kind": "regex", "pattern": r"\bproject\s+falcon\b", "ignore_case": True},
        CODENAME,
        "[REDACTED:{name}]",
    ),
}
CASES = {
    "block-in": ("block", "input"),
    "block-out": ("block", "output"),
    "redact-in": ("redact", "input"),
    "redact-out": ("redact", "output"),
    "log": ("log", "both"),
}


def rules_for(kind: str) -> list[dict[str, Any]]:
    """One rule of `kind` per case, each for the key named after the case."""
    fields = KINDS[kind][0]
    return [
        {"name": f"{kind}-{case}", **fields, "action": action, "apply_to": direction, "keys": [case]}
        for case, (action, direction) in CASES.items()
    ]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("door", DOORS)
async def test_every_action_in_both_directions(
    door: DoorName, kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fields, value, placeholder = KINDS[kind]
    text = f"please keep {value} between us"
    keys = [key(case) for case in CASES] + [key("unscoped")]
    async with e2e_hub(tmp_path, rules_for(kind), keys) as hub:
        client = hub.client(door)
        caplog.set_level(logging.WARNING, logger="hub.guardrails.findings")

        with pytest.raises(Refused) as blocked_in:
            await client.send("block-in", text)
        upstream_saw_blocked_input = hub.provider_saw(value)

        with pytest.raises(Refused) as blocked_out:
            await client.send("block-out", text)

        seen = len(hub.model.requests)
        redacted_in = await client.send("redact-in", text)
        upstream_saw_redacted_input = hub.provider_saw(value, since=seen)
        redacted_out = await client.send("redact-out", text)

        caplog.clear()
        logged = await client.send("log", text)
        records = [r for r in caplog.records if r.name == "hub.guardrails.findings"]

        untouched = await client.send("unscoped", text)

    label = placeholder.format(name=f"{kind}-redact-in")
    for refusal, case in ((blocked_in.value, "block-in"), (blocked_out.value, "block-out")):
        assert refusal.code == REFUSED_CODE[door]
        assert f"{kind}-{case}" in refusal.message  # names the guardrail...
        assert value not in refusal.message  # ...never the value
    assert redacted_in == text.replace(value, label)  # the back end got (and reflected) the redacted text
    assert redacted_out == text.replace(value, placeholder.format(name=f"{kind}-redact-out"))
    if door == "llm":  # only the fake provider records what reached it
        assert not upstream_saw_blocked_input
        assert not upstream_saw_redacted_input
        assert hub.provider_saw(value)  # the log-only and unscoped calls went through as sent
    assert logged == text and untouched == text
    directions = sorted(r.__dict__["direction"] for r in records)
    assert directions == ["input", "output"]  # the log rule saw the value going in and coming back
    for record in records:
        findings: list[dict[str, Any]] = record.__dict__["guardrail_findings"]
        assert {(f["guardrail"], f["action"]) for f in findings} == {(f"{kind}-log", "log")}  # text and structured
        assert value not in record.getMessage() and value not in str(findings)

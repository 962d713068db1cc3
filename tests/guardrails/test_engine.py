"""The verdict API the pipeline stage calls: selection, actions, payloads, messages."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hub.guardrails import GuardrailConfig, GuardrailConfigError, Guardrails, Scope, SecretRuleConfig

pytestmark = pytest.mark.anyio

AWS = "AKIAZ3MSJVNQ2LZ4XGTB"
SAMPLES = {
    "secrets": (f"deploy with {AWS} please", "aws-access-token", AWS),
    "pii": ("write to jane.roe@example.org", "email", "jane.roe@example.org"),
    "regex": ("the codename is Project Falcon.", "codename", "Project Falcon"),
}


def config(kind: str, **extra: Any) -> GuardrailConfig:
    fields: dict[str, Any] = {"name": f"g-{kind}", "kind": kind, **extra}
    if kind == "regex":
        fields.setdefault("pattern", r"\bproject\s+falcon\b")
        fields.setdefault("ignore_case", True)
        fields["name"] = "codename"
    return GuardrailConfig.model_validate(fields)


def scope(direction: str = "input", door: str = "llm", **extra: Any) -> Scope:
    operation = "llm.chat" if door == "llm" else "mcp.tool"
    return Scope(direction, door, operation, **extra)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("kind", ["secrets", "pii", "regex"])
@pytest.mark.parametrize("direction", ["input", "output"])
async def test_block_in_both_directions_never_echoes_the_value(kind: str, direction: str) -> None:
    text, rule, value = SAMPLES[kind]
    guardrails = Guardrails([config(kind)])
    verdict = await guardrails.check(text, scope(direction))
    assert verdict.blocked
    assert verdict.rules == (rule,)
    assert verdict.blocked_by == (config(kind).name,)
    assert value not in verdict.message
    assert verdict.message.startswith("Request blocked" if direction == "input" else "Response blocked")
    assert all(value not in str(f.as_log()) for f in verdict.findings)


@pytest.mark.parametrize("kind", ["secrets", "pii", "regex"])
@pytest.mark.parametrize("direction", ["input", "output"])
async def test_redact_replaces_with_a_typed_placeholder(kind: str, direction: str) -> None:
    text, rule, value = SAMPLES[kind]
    verdict = await Guardrails([config(kind, action="redact")]).check(text, scope(direction))
    assert verdict.redacted
    assert verdict.payload == text.replace(value, f"[REDACTED:{rule}]")


@pytest.mark.parametrize("kind", ["secrets", "pii", "regex"])
async def test_log_only_allows_and_records(kind: str) -> None:
    text, rule, _value = SAMPLES[kind]
    verdict = await Guardrails([config(kind, action="log")]).check(text, scope())
    assert verdict.decision == "allow" and verdict.payload is text
    assert [(f.rule, f.action) for f in verdict.findings] == [(rule, "log")]


async def test_mask_redaction_keeps_the_length() -> None:
    verdict = await Guardrails([config("pii", action="redact", redaction="mask")]).check("to a@b.co", scope())
    assert verdict.payload == "to " + "*" * len("a@b.co")


async def test_clean_text_is_allowed_untouched() -> None:
    guardrails = Guardrails([config("secrets"), config("pii"), config("regex")])
    verdict = await guardrails.check("Summarise the quarterly report, please.", scope())
    assert verdict.decision == "allow" and verdict.findings == ()


async def test_json_payload_strings_are_checked_and_redacted_in_place() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "mail a@example.com"}], "n": 1}
    verdict = await Guardrails([config("pii", action="redact")]).check(payload, scope())
    assert verdict.payload == {
        "model": "m",
        "messages": [{"role": "user", "content": "mail [REDACTED:email]"}],
        "n": 1,
    }
    assert payload["messages"][0]["content"] == "mail a@example.com"  # the original is not mutated
    assert verdict.findings[0].path == "/messages/0/content"


async def test_redaction_then_block_across_guardrails() -> None:
    guardrails = Guardrails([config("pii", action="redact"), config("secrets")])
    verdict = await guardrails.check(f"a@example.com {AWS}", scope())
    assert verdict.blocked and verdict.blocked_by == ("g-secrets",)


@pytest.mark.parametrize(
    ("fields", "call", "applies"),
    [
        ({"apply_to": "input"}, scope("output"), False),
        ({"apply_to": "output"}, scope("output"), True),
        ({"doors": ["mcp"]}, scope(door="llm"), False),
        ({"doors": ["mcp"]}, scope(door="mcp"), True),
        ({"operations": ["mcp.*"]}, scope(door="mcp"), True),
        ({"operations": ["llm.embed"]}, scope(), False),
        ({"keys": ["ci-*"]}, scope(key="ci-runner"), True),
        ({"keys": ["ci-*"]}, scope(key="alice"), False),
        ({"keys": ["ci-*"]}, scope(), False),
        ({"teams": ["data"]}, scope(team="data"), True),
        ({"teams": ["data"]}, scope(team="web"), False),
        ({"servers": ["github"]}, scope(door="mcp", server="github"), True),
        ({"servers": ["github"]}, scope(door="mcp", server="jira"), False),
        ({"servers": ["github"]}, scope(door="llm"), False),
    ],
)
async def test_selection_by_direction_door_operation_key_team_server(
    fields: dict[str, Any], call: Scope, applies: bool
) -> None:
    verdict = await Guardrails([config("secrets", **fields)]).check(SAMPLES["secrets"][0], call)
    assert verdict.blocked is applies


async def test_sampling_checks_the_configured_fraction() -> None:
    guardrails = Guardrails([config("secrets", sampling=0.25)], rng=random.Random(7))
    blocked = [(await guardrails.check(AWS, scope())).blocked for _ in range(400)]
    assert 60 < sum(blocked) < 140
    never = Guardrails([config("secrets", sampling=0.0)])
    assert not (await never.check(AWS, scope())).blocked


async def test_custom_block_message() -> None:
    verdict = await Guardrails([config("secrets", message="no credentials in prompts")]).check(AWS, scope())
    assert verdict.message == "Request blocked by no credentials in prompts."


async def test_secret_rules_can_be_added_disabled_and_overridden() -> None:
    cfg = config(
        "secrets",
        disable_rules=["aws-access-token"],
        add_rules=[SecretRuleConfig(id="acme", regex=r"acme_[0-9a-f]{16}", keywords=["acme_"])],
        override_rules=[SecretRuleConfig(id="github-pat", entropy=7.0)],
    )
    verdict = await Guardrails([cfg]).check(
        f"{AWS} acme_0123456789abcdef ghp_4kXq8B2mZ9rT1vW7yN3pL6sD0fH5jC8aE2uQ", scope()
    )
    assert set(verdict.rules) == {"acme"}  # aws disabled, github-pat now needs entropy > 7


async def test_large_payloads_are_scanned_off_the_loop_with_the_same_result() -> None:
    text = "lorem ipsum " * 5000 + AWS
    verdict = await Guardrails([config("secrets")]).check(text, scope())
    assert verdict.rules == ("aws-access-token",)


def test_configuration_errors() -> None:
    with pytest.raises(GuardrailConfigError, match="duplicate"):
        Guardrails([config("secrets"), config("secrets")])
    with pytest.raises(GuardrailConfigError, match="unknown secret rule"):
        Guardrails([config("secrets", disable_rules=["nope"])])
    with pytest.raises(ValueError, match="does not take: entities"):
        GuardrailConfig(name="x", kind="secrets", entities=["email"])
    with pytest.raises(ValueError, match="pattern or patterns"):
        GuardrailConfig(name="x", kind="regex")
    with pytest.raises(ValueError, match="not a valid RE2"):
        GuardrailConfig(name="x", kind="regex", pattern="(?<=a)b")
    with pytest.raises(ValueError, match="needs: endpoint, api_key"):
        GuardrailConfig(name="x", kind="azure")

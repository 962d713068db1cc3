"""Hostile inputs: ReDoS bait stays linear, obfuscated secrets are still found."""

from __future__ import annotations

import base64
import random
import string
import time
from urllib.parse import quote

import pytest

from hub.guardrails import GuardrailConfig, Guardrails, Scope
from hub.guardrails.secrets import SecretScanner

AWS = "AKIAZ3MSJVNQ2LZ4XGTB"
GHP = "ghp_4kXq8B2mZ9rT1vW7yN3pL6sD0fH5jC8aE2uQ"
SCANNER = SecretScanner()

_rng = random.Random(1)
BAITS = {
    "a-run": "a" * 100_000,
    "keywords-then-a": "cohere okta meraki sumologic " + "a" * 100_000,
    "private-key-header": "-----BEGIN PRIVATE KEY-----" + "A" * 100_000,
    "base64-blob": "".join(_rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(100_000)),
    "generic-assignments": "api_key = " * 10_000,
    "nested-quotes": "'\"" * 50_000,
}


@pytest.mark.parametrize("name", sorted(BAITS))
def test_redos_bait_scans_in_linear_time(name: str) -> None:
    """Counted in CPU time of this process: a busy machine stretches the wall clock, not the work (~0.1 s here;
    a backtracking pattern on 100,000 characters takes minutes)."""
    started = time.process_time()
    SCANNER.scan(BAITS[name])
    assert time.process_time() - started < 2.0


def test_base64_encoded_secret_is_found_and_the_encoded_span_reported() -> None:
    encoded = base64.b64encode(f"token {GHP}".encode()).decode()
    text = f"blob: {encoded} end"
    hits = [h for h in SCANNER.scan(text) if h.rule == "github-pat"]
    assert hits and hits[0].detail["decoded"] == "base64"
    assert text[hits[0].start : hits[0].end] == encoded


def test_double_encoded_secret_is_found() -> None:
    inner = base64.b64encode(f"key={GHP}".encode()).decode()
    outer = "".join(f"%{b:02X}" for b in inner.encode())
    assert "github-pat" in {h.rule for h in SCANNER.scan(f"q={outer}")}


def test_hex_and_percent_encoded_secrets_are_found() -> None:
    assert "github-pat" in {h.rule for h in SCANNER.scan(GHP.encode().hex())}
    assert "github-pat" in {h.rule for h in SCANNER.scan(quote(GHP, safe=""))}


def test_decoding_depth_zero_turns_decoding_off() -> None:
    encoded = base64.b64encode(GHP.encode()).decode()
    assert "github-pat" not in {h.rule for h in SecretScanner(max_decode_depth=0).scan(encoded)}


@pytest.mark.anyio
async def test_zero_width_characters_do_not_hide_a_secret() -> None:
    hidden = "\u200b".join(AWS)
    text = f"key: {hidden} ok"
    guardrails = Guardrails([GuardrailConfig(name="s", kind="secrets", action="redact")])
    verdict = await guardrails.check(text, Scope("input", "mcp", "mcp.tool"))
    assert verdict.payload == "key: [REDACTED:aws-access-token] ok"
    assert verdict.findings[0].detail["obfuscated"] == "invisible"


@pytest.mark.anyio
async def test_zero_width_in_an_email_is_folded_for_pii() -> None:
    guardrails = Guardrails([GuardrailConfig(name="p", kind="pii", entities=["email"])])
    verdict = await guardrails.check("to jo\u200dhn@exam\u2060ple.com", Scope("output", "mcp", "mcp.tool"))
    assert verdict.rules == ("email",)

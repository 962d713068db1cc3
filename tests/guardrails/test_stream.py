"""Output streams: a sliding window catches values split across chunks."""

from __future__ import annotations

import pytest

from hub.guardrails import GuardrailBlockedError, GuardrailConfig, Guardrails, Scope, StreamScanner

pytestmark = pytest.mark.anyio

AWS = "AKIAZ3MSJVNQ2LZ4XGTB"
OUT = Scope("output", "llm", "llm.chat")


def stream_for(*configs: GuardrailConfig) -> StreamScanner:
    scanner = Guardrails(list(configs)).stream(OUT)
    assert scanner is not None
    return scanner


async def run(scanner: StreamScanner, chunks: list[str]) -> str:
    out = [await scanner.feed(c) for c in chunks]
    out.append(await scanner.finish())
    return "".join(out)


@pytest.mark.parametrize("split", range(1, len(AWS)))
async def test_secret_split_across_chunks_blocks(split: int) -> None:
    text = f"here is the key {AWS} and more text"
    cut = text.index(AWS) + split
    scanner = stream_for(GuardrailConfig(name="s", kind="secrets", stream_window=64))
    sent: list[str] = []
    with pytest.raises(GuardrailBlockedError) as info:
        for chunk in (text[:cut], text[cut:]):
            sent.append(await scanner.feed(chunk))  # noqa: PERF401 (keep what was sent before the raise)
        sent.append(await scanner.finish())
    assert info.value.verdict.rules == ("aws-access-token",)
    assert AWS not in info.value.verdict.message
    assert not any(AWS[:4] in s for s in sent)  # no part of the key left before the block


async def test_redaction_of_a_value_split_over_many_chunks() -> None:
    text = "contact: jane.roe@example.org, thanks! " + "filler " * 40
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    scanner = stream_for(GuardrailConfig(name="p", kind="pii", action="redact", stream_window=32))
    assert await run(scanner, chunks) == text.replace("jane.roe@example.org", "[REDACTED:email]")
    assert [(f.rule, f.start, f.end) for f in scanner.findings] == [("email", 9, 29)]


async def test_redaction_holds_back_only_the_window_tail() -> None:
    scanner = stream_for(GuardrailConfig(name="p", kind="pii", action="redact", stream_window=32))
    released = await scanner.feed("x" * 100)
    assert released == "x" * 68
    assert await scanner.feed("y" * 10) == "x" * 10
    assert await scanner.finish() == "x" * 22 + "y" * 10


async def test_log_only_streams_hold_nothing_back() -> None:
    scanner = stream_for(GuardrailConfig(name="p", kind="pii", action="log"))
    assert await scanner.feed("mail a@example.com now") == "mail a@example.com now"
    assert await scanner.finish() == ""
    assert [f.rule for f in scanner.findings] == ["email"]


KEY = "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEA7bq9" * 20 + "\n-----END RSA PRIVATE KEY-----"
KEY_CHUNKS = [KEY[i : i + 16] for i in range(0, len(KEY), 16)] + [" done"]


async def test_a_private_key_within_the_window_is_redacted_whole() -> None:
    scanner = stream_for(GuardrailConfig(name="s", kind="secrets", action="redact", stream_window=1024))
    assert await run(scanner, KEY_CHUNKS) == "[REDACTED:private-key] done"


async def test_a_private_key_longer_than_the_window_still_blocks() -> None:
    scanner = stream_for(GuardrailConfig(name="s", kind="secrets", stream_window=32))
    with pytest.raises(GuardrailBlockedError):
        await run(scanner, KEY_CHUNKS)


async def test_a_value_that_already_matches_is_held_until_it_ends() -> None:
    scanner = stream_for(GuardrailConfig(name="p", kind="pii", action="redact", stream_window=16))
    text = "x" * 40 + " +1 (212) 555-0199 y"
    chunks = [text[i : i + 2] for i in range(0, len(text), 2)]
    assert await run(scanner, chunks) == "x" * 40 + " [REDACTED:phone] y"


def test_no_stream_scanner_when_nothing_applies() -> None:
    guardrails = Guardrails([GuardrailConfig(name="s", kind="secrets", apply_to="input")])
    assert guardrails.stream(OUT) is None

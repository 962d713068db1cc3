"""Thinking signatures on their way through the translations (`llm.signatures`, the Chat Completions shape the
providers and `llm.messages` share): what goes in comes back out unchanged, and each provider gets only its own."""

from __future__ import annotations

from typing import Any

import pytest

from llm.messages import ChatStreamTranslator, from_chat, to_chat, usage_from_chat
from llm.signatures import call_signature, from_gemini, is_gemini, signed_call_id, to_gemini


@pytest.mark.parametrize("signature", ["Cq8BAb4+9vu/x==", "skip_thought_signature_validator", "a__thought_b", "é"])
def test_a_function_calls_signature_survives_its_id(signature: str) -> None:
    call_id = signed_call_id("call_abc", signature)
    assert call_id.startswith("call_abc__thought_")
    assert all(c.isalnum() or c in "_-" for c in call_id)  # Anthropic's id alphabet
    assert call_signature(call_id) == signature


@pytest.mark.parametrize("call_id", ["toolu_01ABC", "call__thought_", None, "x__thought_!!!"])
def test_an_id_without_a_signature_carries_none(call_id: Any) -> None:
    assert call_signature(call_id) is None


def test_a_gemini_thought_signature_is_marked_and_unmarked() -> None:
    marked = from_gemini("sig+/=")
    assert is_gemini(marked) and not is_gemini("EqQBCkYIBx") and not is_gemini(None)
    assert to_gemini(marked) == "sig+/=" and to_gemini("EqQBCkYIBx") is None


HISTORY: list[Any] = [
    {"role": "user", "content": "hi"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "claude", "signature": "EqQBCkYIBx"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": "gemini", "signature": from_gemini("g1")},
            {"type": "thinking", "thinking": "unsigned", "signature": ""},
            {"type": "text", "text": "answer"},
        ],
    },
    {"role": "user", "content": "more"},
]


@pytest.mark.parametrize(
    ("signatures", "kept"),
    [
        ("anthropic", [("thinking", "claude"), ("redacted_thinking", None)]),
        ("gemini", [("thinking", "gemini")]),
        (None, []),
    ],
)
def test_each_target_is_sent_only_the_thinking_it_signed(signatures: str | None, kept: list[Any]) -> None:
    body = {"model": "m", "max_tokens": 8, "messages": HISTORY}
    translation = to_chat(body, signatures=signatures)
    assistant = translation.request["messages"][1]
    blocks = assistant.get("thinking_blocks", [])
    assert [(b["type"], b.get("thinking")) for b in blocks] == kept
    assert "thinking_blocks" in translation.dropped  # the others, named


def test_a_completions_signed_thinking_comes_back_in_order() -> None:
    message = {
        "role": "assistant",
        "content": "done",
        "reasoning_content": "ab",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "a", "signature": "s1"},
            {"type": "redacted_thinking", "data": "r"},
        ],
    }
    completion = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    content = from_chat(completion, "m")["content"]
    assert content == [
        {"type": "thinking", "thinking": "a", "signature": "s1"},
        {"type": "redacted_thinking", "data": "r"},
        {"type": "text", "text": "done"},
    ]


def test_a_streamed_signature_ends_its_thinking_block_and_redacted_thinking_is_one_block() -> None:
    translator = ChatStreamTranslator("m")
    deltas: list[Any] = [
        {"reasoning_content": "one"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "s1"}]},
        {"reasoning_content": "two"},
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "r"}]},
        {"content": "done"},
    ]
    events: list[Any] = []
    for delta in deltas:
        events += translator.feed({"choices": [{"index": 0, "delta": delta}]})
    events += translator.close()
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "thinking", "redacted_thinking", "text"]
    assert starts[2] == {"type": "redacted_thinking", "data": "r"}
    signed = [e for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    assert [(e["index"], e["delta"]["signature"]) for e in signed] == [(0, "s1")]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]


def test_usage_with_cache_writes_carries_the_ttl_split() -> None:
    usage = {
        "prompt_tokens": 1550,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 1500, "cache_write_1h_tokens": 1000},
    }
    out = usage_from_chat(usage)
    assert out["input_tokens"] == 10 and out["cache_creation_input_tokens"] == 1500
    assert out["cache_creation"] == {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000}
    assert "cache_creation" not in usage_from_chat({"prompt_tokens": 5, "completion_tokens": 1})

"""Chat completions as Anthropic Messages responses, checked against the official SDK's models."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from llm.errors import ProviderResponseError
from llm.messages import from_chat, usage_from_chat

from ..fixtures import load


def _completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, "logprobs": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [choice],
        **extra,
    }


def test_a_recorded_openai_completion_becomes_a_message_the_sdk_parses() -> None:
    message = from_chat(load("openai_chat_completion.json"), "claude-sonnet-4-5")
    parsed = anthropic.types.Message.model_validate(message)
    assert parsed.id.startswith("msg_") and parsed.model == "claude-sonnet-4-5" and parsed.role == "assistant"
    assert [(b.type, getattr(b, "text", None)) for b in parsed.content] == [
        ("text", "The image shows a wooden boardwalk.")
    ]
    assert parsed.stop_reason == "end_turn" and parsed.stop_sequence is None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.cache_read_input_tokens) == (
        1117,
        46,
        0,
    )
    assert parsed.usage.output_tokens_details is None  # no reasoning tokens reported


def test_reasoning_text_and_parallel_tool_calls_become_thinking_text_and_tool_use_blocks() -> None:
    completion = _completion(
        {
            "content": "Checking both.",
            "reasoning_content": "Two lookups are needed.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"PST"}'}},
            ],
        },
        "tool_calls",
        usage={
            "prompt_tokens": 2195,
            "completion_tokens": 503,
            "total_tokens": 2698,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 200},
        },
    )
    parsed = anthropic.types.Message.model_validate(from_chat(completion, "claude-opus-4-1"))
    thinking, text, first, second = parsed.content
    assert thinking.type == "thinking" and thinking.thinking == "Two lookups are needed." and thinking.signature == ""
    assert text.type == "text" and text.text == "Checking both."
    assert first.type == "tool_use" and (first.id, first.name, first.input) == (
        "call_1",
        "get_weather",
        {"location": "SF"},
    )
    assert second.type == "tool_use" and second.input == {"tz": "PST"}
    assert parsed.stop_reason == "tool_use" and parsed.stop_sequence is None
    # OpenAI's prompt tokens include the cached ones; Anthropic's input tokens do not.
    assert (parsed.usage.input_tokens, parsed.usage.cache_read_input_tokens) == (2095, 100)
    assert parsed.usage.cache_creation_input_tokens == 0 and parsed.usage.output_tokens == 503
    assert parsed.usage.output_tokens_details is not None and parsed.usage.output_tokens_details.thinking_tokens == 200


def test_arguments_that_are_not_a_json_object_are_kept_whole_instead_of_becoming_empty() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "[1, 2]"}},
        {"id": "c3", "type": "function", "function": {"name": "h", "arguments": ""}},
    ]
    content = from_chat(_completion({"content": None, "tool_calls": calls}, "tool_calls"), "m")["content"]
    assert [block["input"] for block in content] == [{"raw_arguments": '{"a": 1'}, {"raw_arguments": "[1, 2]"}, {}]
    anthropic.types.Message.model_validate(from_chat(_completion({"content": None, "tool_calls": calls}), "m"))


@pytest.mark.parametrize(
    ("finish", "choice_extra", "expected"),
    [
        ("stop", {}, ("end_turn", None)),
        ("length", {}, ("max_tokens", None)),
        ("tool_calls", {}, ("tool_use", None)),
        ("content_filter", {}, ("refusal", None)),
        (None, {}, ("end_turn", None)),
        ("stop", {"stop_reason": "END"}, ("stop_sequence", "END")),
        ("stop", {"stop_reason": "NOT-REQUESTED"}, ("end_turn", None)),
        ("stop", {"stop_reason": 128009}, ("end_turn", None)),
    ],
)
def test_finish_reasons_map_to_anthropic_stop_reasons(
    finish: str | None, choice_extra: dict[str, Any], expected: tuple[str, str | None]
) -> None:
    completion = _completion({"content": "1, 2, "}, finish)
    completion["choices"][0].update(choice_extra)
    message = from_chat(completion, "m", stop_sequences=["END"])
    assert (message["stop_reason"], message["stop_sequence"]) == expected
    anthropic.types.Message.model_validate(message)


def test_a_stop_finish_with_tool_calls_is_tool_use_and_a_refusal_is_a_refusal() -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert from_chat(_completion({"content": None, "tool_calls": calls}, "stop"), "m")["stop_reason"] == "tool_use"
    refused = from_chat(_completion({"content": None, "refusal": "I can't help with that."}), "m")
    assert refused["stop_reason"] == "refusal"
    assert refused["content"] == [{"type": "text", "text": "I can't help with that."}]


def test_missing_usage_is_zeros_and_reported_cache_writes_are_taken_out_of_the_input() -> None:
    message = from_chat(_completion({"content": ""}), "m")
    assert message["content"] == [] and message["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }
    usage = usage_from_chat(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300},
        }
    )
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (
        100,
        600,
        300,
    )


@pytest.mark.parametrize("response", [{}, {"choices": []}, {"choices": [{"index": 0}]}])
def test_a_completion_without_a_message_is_a_provider_response_error(response: dict[str, Any]) -> None:
    with pytest.raises(ProviderResponseError):
        from_chat(response, "m")

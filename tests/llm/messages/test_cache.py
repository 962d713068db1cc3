"""Cache markers through the translation, without a server: where each `cache_control` lands in the Chat Completions
request and then in the Converse request, and what is checked (`llm.messages.cache`, `llm.providers.bedrock`)."""

from __future__ import annotations

from typing import Any

import pytest

from llm.messages import to_chat
from llm.providers.bedrock import takes_cache_points, to_converse
from llm.schema import InvalidRequest

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"
HOUR: dict[str, Any] = {"type": "ephemeral", "ttl": "1h"}
FIVE: dict[str, Any] = {"type": "ephemeral"}
POINT_1H = {"cachePoint": {"type": "default", "ttl": "1h"}}
POINT = {"cachePoint": {"type": "default"}}


def converse(body: dict[str, Any], model: str = CLAUDE) -> dict[str, Any]:
    return to_converse(to_chat({"model": "m", "max_tokens": 8, **body}, cache=True).request, "bedrock", model)


def test_the_models_that_take_cache_points() -> None:
    assert takes_cache_points(CLAUDE) and takes_cache_points("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert takes_cache_points("global.anthropic.claude-opus-4-5-20251101-v1:0") and takes_cache_points(NOVA)
    assert not takes_cache_points("anthropic.claude-3-haiku-20240307-v1:0")
    assert not takes_cache_points("meta.llama3-70b-instruct-v1:0")


def test_a_marker_inside_a_tool_result_puts_the_point_after_the_result() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "text", "text": "r", "cache_control": HOUR}],
    }
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    body = converse(
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [use]},
                {"role": "user", "content": [{**result, "cache_control": FIVE}]},
            ]
        }
    )
    assert body["messages"][-1]["content"] == [{"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}}, POINT]


def test_a_marked_assistant_text_gets_its_point_before_the_tool_calls() -> None:
    turn = [
        {"type": "text", "text": "Let me look.", "cache_control": FIVE},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
    ]
    body = converse({"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": turn}]})
    assert [next(iter(b)) for b in body["messages"][1]["content"]] == ["text", "cachePoint", "toolUse"]


def test_a_marked_image_gets_its_point_after_it() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
        "cache_control": HOUR,
    }
    body = converse({"messages": [{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}]})
    assert [next(iter(b)) for b in body["messages"][0]["content"]] == ["image", "cachePoint", "text"]
    assert body["messages"][0]["content"][1] == POINT_1H


def test_nova_caches_system_and_messages_but_not_tools() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}, "cache_control": HOUR}
    system = [{"type": "text", "text": "Be brief.", "cache_control": HOUR}]
    body = converse({"tools": [tool], "system": system, "messages": [{"role": "user", "content": "hi"}]}, NOVA)
    assert [next(iter(t)) for t in body["toolConfig"]["tools"]] == ["toolSpec"]
    assert body["system"] == [{"text": "Be brief."}, POINT]  # Nova caches for 5 minutes only


def test_unmarked_system_turns_stay_one_text_after_the_marked_prompt() -> None:
    system = [{"type": "text", "text": "Be brief.", "cache_control": FIVE}]
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Reminder."},
        {"role": "user", "content": "and?"},
    ]
    body = converse({"system": system, "messages": turns})
    assert body["system"] == [{"text": "Be brief."}, POINT, {"text": "Reminder."}]


def test_markers_are_dropped_and_named_where_not_carried() -> None:
    body = {
        "model": "m",
        "max_tokens": 8,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": FIVE}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": FIVE}]}],
    }
    translation = to_chat(body)
    assert translation.dropped == ("cache_control",)
    assert "cache_control" not in str(translation.request)


def test_five_markers_are_refused_only_where_they_would_be_sent() -> None:
    parts = [{"type": "text", "text": f"p{i}", "cache_control": FIVE} for i in range(5)]
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": parts}]}
    with pytest.raises(InvalidRequest, match="A maximum of 4 blocks with cache_control may be provided. Found 5."):
        to_chat(body, cache=True)
    assert to_chat(body).dropped == ("cache_control",)


def test_a_top_level_marker_on_an_already_marked_last_block_is_one_point() -> None:
    parts = [{"type": "text", "text": f"p{i}", "cache_control": FIVE} for i in range(4)]
    body = {"model": "m", "max_tokens": 8, "cache_control": FIVE, "messages": [{"role": "user", "content": parts}]}
    request = to_chat(body, cache=True).request
    assert sum("cache_control" in p for p in request["messages"][0]["content"]) == 4


def test_a_marker_that_is_not_ephemeral_is_refused() -> None:
    body = {"model": "m", "max_tokens": 8, "tools": [{"name": "f", "input_schema": {}, "cache_control": {"type": "x"}}]}
    body["messages"] = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequest, match=r"tools\[0\]\.cache_control"):
        to_chat(body, cache=True)


def test_a_one_hour_ttl_goes_only_to_the_models_that_take_it() -> None:
    body = {
        "system": [{"type": "text", "text": "Be brief.", "cache_control": HOUR}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert converse(body)["system"][1] == POINT_1H
    assert converse(body, "us.anthropic.claude-3-7-sonnet-20250219-v1:0")["system"][1] == POINT  # the default 5 minutes

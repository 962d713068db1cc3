"""Messages requests as Chat Completions requests: bodies modelled on Anthropic's documented examples."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm.errors import UnsupportedParameter
from llm.messages import to_chat
from llm.schema import InvalidRequest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
        "required": ["location"],
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _weather_loop() -> dict[str, Any]:
    """The extended-thinking tool loop of Anthropic's docs: thinking + tool_use, then the tool result."""
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "The user wants the weather in Paris. I should call get_weather.",
                        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
                    },
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw"},
                    {"type": "text", "text": "I'll check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Current temperature: 88°F"}],
            },
        ],
    }


def test_a_thinking_tool_loop_becomes_tool_calls_and_tool_messages_and_names_what_it_dropped() -> None:
    translation = to_chat(_weather_loop())
    request = translation.request
    assert request["model"] == "claude-sonnet-4-5" and request["max_completion_tokens"] == 16000
    assert request["messages"] == [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": "I'll check.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "Current temperature: 88°F"},
    ]
    assert request["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": WEATHER_TOOL["description"],
            },
        }
    ]
    assert "reasoning_effort" not in request
    assert translation.dropped == ("thinking_blocks", "thinking")
    assert translation.dropped_header == "thinking_blocks,thinking"


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 10000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 32000}, None, "high"),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "enabled", "budget_tokens": 32000}, {"effort": "low"}, "low"),
        ({"type": "disabled"}, None, None),
    ],
)
def test_thinking_maps_to_reasoning_effort_on_a_target_that_takes_it(
    thinking: dict[str, Any], output_config: dict[str, Any] | None, effort: str | None
) -> None:
    body = {**_weather_loop(), "thinking": thinking}
    if output_config is not None:
        body["output_config"] = output_config
    translation = to_chat(body, reasoning=True)
    assert translation.request.get("reasoning_effort") == effort
    assert "thinking" not in translation.dropped and "effort" not in translation.dropped


def test_without_reasoning_effort_both_thinking_and_effort_are_reported_dropped() -> None:
    body = {**_weather_loop(), "messages": [{"role": "user", "content": "hi"}], "output_config": {"effort": "high"}}
    assert to_chat(body).dropped == ("thinking", "effort")
    disabled = {**body, "thinking": {"type": "disabled"}}
    del disabled["output_config"]
    assert to_chat(disabled).dropped == ()


def test_a_target_with_its_own_thinking_switch_gets_the_thinking_object_itself() -> None:
    """Gemini and Claude on Bedrock take Anthropic's `thinking` (its exact budget) rather than an effort; an explicit
    `output_config.effort` still travels as `reasoning_effort` where the target takes one (Gemini), and is named
    dropped where it does not (Bedrock)."""
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = {**_weather_loop(), "thinking": thinking}
    both = to_chat(body, reasoning=True, thinking=True)
    assert both.request["thinking"] == thinking and "reasoning_effort" not in both.request
    assert "thinking" not in both.dropped and "effort" not in both.dropped
    with_effort = to_chat({**body, "output_config": {"effort": "max"}}, reasoning=True, thinking=True)
    assert with_effort.request["reasoning_effort"] == "high" and with_effort.request["thinking"] == thinking
    switch_only = to_chat({**body, "output_config": {"effort": "low"}}, thinking=True)
    assert switch_only.request["thinking"] == thinking and "reasoning_effort" not in switch_only.request
    assert "effort" in switch_only.dropped and "thinking" not in switch_only.dropped
    assert "thinking" not in to_chat(body, reasoning=True).request


def test_parallel_tool_results_become_tool_messages_in_order_before_the_users_text() -> None:
    body = {
        "model": "m",
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Weather and time in SF?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"location": "SF"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"timezone": "PST"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": [{"type": "text", "text": "68°F"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "no clock", "is_error": True},
                    {"type": "text", "text": "Thanks!"},
                ],
            },
        ],
    }
    messages = to_chat(body).request["messages"]
    assistant = messages[1]
    assert assistant["content"] is None and [c["id"] for c in assistant["tool_calls"]] == ["toolu_a", "toolu_b"]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_a", "content": "68°F"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "Error: no clock"},
        {"role": "user", "content": "Thanks!"},
    ]


def test_images_by_base64_and_url_become_image_url_parts_and_a_tool_results_image_follows_in_a_user_turn() -> None:
    body = {
        "model": "m",
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/ant.jpg"}},
                    {"type": "text", "text": "Describe these."},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "captured"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        ],
                    }
                ],
            },
        ],
    }
    messages = to_chat(body).request["messages"]
    assert messages[0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/ant.jpg"}},
        {"type": "text", "text": "Describe these."},
    ]
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert messages[2] == {"role": "tool", "tool_call_id": "t1", "content": "captured"}
    assert messages[3] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
    }


def test_cache_control_markers_everywhere_are_dropped_once_and_the_content_is_kept() -> None:
    body = {
        "model": "m",
        "max_tokens": 100,
        "cache_control": {"type": "ephemeral"},
        "system": [
            {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
            {
                "type": "text",
                "text": "<the entire contents of Pride and Prejudice>",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        "tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Analyze the major themes.", "cache_control": {"type": "ephemeral"}}
                ],
            }
        ],
    }
    translation = to_chat(body)
    assert translation.dropped == ("cache_control",)
    assert translation.request["messages"] == [
        {
            "role": "system",
            "content": "You are an AI assistant tasked with analyzing literary works.\n\n"
            "<the entire contents of Pride and Prejudice>",
        },
        {"role": "user", "content": "Analyze the major themes."},
    ]
    assert "cache_control" not in orjson.dumps(translation.request).decode()


def test_documents_pdf_becomes_a_file_part_text_becomes_text_and_a_url_pdf_is_refused() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}
    content = [
        {"type": "document", "source": pdf, "title": "report.pdf", "citations": {"enabled": True}},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
            "title": "Facts",
        },
        {"type": "text", "text": "Summarise."},
    ]
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
    translation = to_chat(body)
    assert translation.request["messages"][0]["content"] == [
        {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
        {"type": "text", "text": "Facts\n\nThe grass is green."},
        {"type": "text", "text": "Summarise."},
    ]
    assert translation.dropped == ("citations",)
    by_url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    with pytest.raises(UnsupportedParameter, match=r"messages\[0\]\.content\[0\]\.source \('url' document source\)"):
        to_chat({**body, "messages": [{"role": "user", "content": [by_url]}]})


def test_sampling_stop_metadata_and_stream_fields_map_and_top_k_is_reported() -> None:
    body = {
        "model": "m",
        "max_tokens": 256,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:", "END"],
        "metadata": {"user_id": "user-1234"},
        "stream": True,
        "service_tier": "auto",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    translation = to_chat(body)
    request = translation.request
    assert (request["temperature"], request["top_p"], request["stop"]) == (0.3, 0.9, ["\n\nHuman:", "END"])
    assert request["user"] == "user-1234" and request["max_completion_tokens"] == 256
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert "top_k" not in request and set(translation.dropped) == {"top_k", "service_tier"}


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ],
)
def test_tool_choice_maps_each_kind_and_disabling_parallel_use(
    choice: dict[str, Any], expected: object, parallel: bool | None
) -> None:
    body = {"model": "m", "max_tokens": 5, "tools": [WEATHER_TOOL], "tool_choice": choice}
    request = to_chat({**body, "messages": [{"role": "user", "content": "x"}]}).request
    assert request["tool_choice"] == expected
    assert request.get("parallel_tool_calls") == parallel
    without_tools = to_chat({**body, "tools": [], "messages": [{"role": "user", "content": "x"}]}).request
    assert "tool_choice" not in without_tools and "parallel_tool_calls" not in without_tools


def test_strict_tools_and_json_schema_output_are_kept_and_unknown_fields_are_named() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    body = {
        "model": "m",
        "max_tokens": 5,
        "tools": [{**WEATHER_TOOL, "strict": True, "defer_loading": True}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
        "context_management": {"edits": []},
        "x-odd key!": 1,
        "messages": [{"role": "user", "content": "x"}],
    }
    translation = to_chat(body)
    assert translation.request["tools"][0]["function"]["strict"] is True
    assert translation.request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    assert translation.dropped == ("context_management", "unknown_field", "tools.defer_loading")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}, "web_search_20250305"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "bash_20250124"),
        ({"mcp_servers": [{"type": "url", "url": "https://example.com/sse", "name": "x"}]}, "mcp_servers"),
        ({"container": "container_1"}, "container"),
        (
            {
                "messages": [
                    {"role": "user", "content": "search"},
                    {
                        "role": "assistant",
                        "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}],
                    },
                ]
            },
            "server_tool_use",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "'file' image source",
        ),
    ],
)
def test_what_only_anthropic_can_run_is_refused_by_name(change: dict[str, Any], named: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **change}
    with pytest.raises(UnsupportedParameter) as info:
        to_chat(body)
    assert named in info.value.parameter and not info.value.retryable


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "request body must be a JSON object"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, r"messages\[0\]\.role"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 7}]}, r"messages\[0\]\.content"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            r"messages\[0\]\.content\[0\]\.tool_use_id",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "tool_choice": {"type": "maybe"},
                "messages": [{"role": "user", "content": "x"}],
            },
            "tool_choice",
        ),
        (
            {"model": "m", "max_tokens": 5, "tools": [{"name": "f"}], "messages": [{"role": "user", "content": "x"}]},
            r"tools\[0\]",
        ),
        (
            {"model": "m", "max_tokens": 5, "stop_sequences": "END", "messages": [{"role": "user", "content": "x"}]},
            "stop_sequences",
        ),
    ],
)
def test_a_malformed_body_is_an_invalid_request_that_names_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        to_chat(body)


def test_search_results_content_documents_citations_and_cached_tool_results_are_carried_as_text() -> None:
    search = {
        "type": "search_result",
        "source": "https://docs.example.com/api",
        "title": "API Reference",
        "content": [{"type": "text", "text": "All endpoints need a key."}],
        "citations": {"enabled": True},
    }
    content_doc = {
        "type": "document",
        "source": {
            "type": "content",
            "content": [{"type": "text", "text": "First chunk."}, {"type": "text", "text": "Second."}],
        },
    }
    body = {
        "model": "m",
        "max_tokens": 10,
        "system": "Answer from the sources.",
        "messages": [
            {"role": "user", "content": [search, content_doc, {"type": "text", "text": "How do I authenticate?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Use a key.", "citations": [{"type": "search_result_location"}]},
                    {
                        "type": "tool_use",
                        "id": "t",
                        "name": "lookup",
                        "input": {},
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "thinking", "thinking": "misplaced", "signature": "s"},
                    {"type": "tool_result", "tool_use_id": "t", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {"role": "assistant", "content": "Done."},
        ],
    }
    translation = to_chat(body)
    messages = translation.request["messages"]
    assert messages[0] == {"role": "system", "content": "Answer from the sources."}
    assert messages[1]["content"] == [
        {"type": "text", "text": "API Reference\nhttps://docs.example.com/api\nAll endpoints need a key."},
        {"type": "text", "text": "First chunk."},
        {"type": "text", "text": "Second."},
        {"type": "text", "text": "How do I authenticate?"},
    ]
    assert messages[2]["content"] == "Use a key."
    assert messages[3:] == [
        {"role": "tool", "tool_call_id": "t", "content": ""},
        {"role": "assistant", "content": "Done."},
    ]
    assert translation.dropped == ("citations", "cache_control", "thinking_blocks")


def test_metadata_other_than_a_user_id_and_unknown_output_config_are_reported() -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "metadata": {"user_id": None, "team": "x"},
        "output_config": {"verbosity": "low"},
        "messages": [{"role": "user", "content": "x"}],
    }
    translation = to_chat(body)
    assert "user" not in translation.request
    assert translation.dropped == ("metadata.team", "output_config.verbosity")


_X = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"tools": {"name": "f"}}, "tools"),
        ({"tools": ["f"]}, r"tools\[0\]"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"thinking": "on"}, "thinking"),
        ({"output_config": {"effort": "extreme"}}, r"output_config\.effort"),
        ({"output_config": "fast"}, "output_config"),
        ({"output_config": {"format": {"type": "xml"}}}, r"output_config\.format"),
        ({"metadata": ["u"]}, "metadata"),
        ({"system": [{"type": "image"}]}, r"system\[0\]"),
        ({"system": [{"type": "text", "text": 3}]}, r"system\[0\]\.text"),
        ({"messages": ["hi"]}, r"messages\[0\]"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]}, r"content\[0\]\.source"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
            "base64 sources need media_type and data",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": None}]}]}, r"content\[0\]\.source"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}]},
            "tool_use blocks need a string id and name",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}]}
                ]
            },
            r"content\[0\]\.input",
        ),
    ],
)
def test_more_malformed_fields_are_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        to_chat({"model": "m", "max_tokens": 5, "messages": _X, **change})


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        (
            [{"role": "user", "content": [{"type": "web_search_tool_result", "tool_use_id": "s", "content": []}]}],
            "server tool",
        ),
        ([{"role": "assistant", "content": [{"type": "container_upload", "file_id": "f"}]}], "container_upload"),
        ([{"role": "assistant", "content": [{"type": "image", "source": {}}]}], "'image' block in an assistant turn"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "'audio' block"),
    ],
)
def test_blocks_without_a_translation_are_refused_by_position(messages: list[dict[str, Any]], named: str) -> None:
    with pytest.raises(UnsupportedParameter, match=named):
        to_chat({"model": "m", "max_tokens": 5, "messages": messages})


def test_a_claude_code_shaped_turn_translates_with_its_system_turns_tool_search_and_effort() -> None:
    """The shape Claude Code sends (docs/agents-wire-notes.md): a billing line and cached system blocks, reminders as
    `system` turns, adaptive thinking with an effort, ToolSearch's `tool_reference` answer and a deferred tool."""
    echo = {"name": "mcp__fixture__echo", "description": "Echo", "input_schema": {"type": "object"}}
    user_id = '{"device_id":"d","account_uuid":"","session_id":"s"}'
    body: dict[str, Any] = {
        "model": "claude-opus-5-5",
        "max_tokens": 128000,
        "stream": True,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": user_id},
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [
            {"name": "ToolSearch", "description": "Find tools", "input_schema": {"type": "object"}},
            {**echo, "defer_loading": True},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>cwd: /repo</system-reminder>"},
                    {"type": "text", "text": "Echo hub", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {"role": "system", "content": [{"type": "text", "text": "Deferred tools: mcp__fixture__echo"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "", "signature": "sig"},
                    {
                        "type": "tool_use",
                        "id": "toolu_s",
                        "name": "ToolSearch",
                        "input": {"query": "select:mcp__fixture__echo"},
                    },
                    {"type": "tool_use", "id": "toolu_e", "name": "mcp__fixture__echo", "input": {"text": "hub"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_s",
                        "content": [
                            {"type": "text", "text": "Tool loaded."},
                            {"type": "tool_reference", "tool_name": "mcp__fixture__echo"},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_e", "content": "hub"},
                ],
            },
        ],
    }
    translation = to_chat(body, reasoning=True)
    request = translation.request
    assert [m["role"] for m in request["messages"]] == ["system", "user", "system", "assistant", "tool", "tool"]
    assert request["messages"][0]["content"].endswith("\n\nYou are Claude Code.")
    assert request["messages"][2] == {"role": "system", "content": "Deferred tools: mcp__fixture__echo"}
    assert request["messages"][4] == {
        "role": "tool",
        "tool_call_id": "toolu_s",
        "content": "Tool loaded.\nmcp__fixture__echo",
    }
    assert [t["function"]["name"] for t in request["tools"]] == ["ToolSearch", "mcp__fixture__echo"]
    assert request["reasoning_effort"] == "medium" and request["user"] == user_id
    assert translation.dropped == ("context_management", "cache_control", "thinking_blocks", "tools.defer_loading")

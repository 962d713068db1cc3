"""An Anthropic Messages request as an OpenAI Chat Completions request, for the providers that speak only that.

Translated: `system` -> a leading system message; the conversation (see `llm.messages.turns`); custom tools
(`input_schema`) -> function tools, `strict` kept; `tool_choice` auto / any / tool / none -> auto / required /
the named function / none, `disable_parallel_tool_use` -> `parallel_tool_calls: false`; `max_tokens` ->
`max_completion_tokens`; `stop_sequences` -> `stop`; `temperature`, `top_p`; `metadata.user_id` -> `user`;
`stream` -> `stream` with `stream_options.include_usage` (usage arrives on the last chunk);
`output_config.format` (a JSON schema) -> `response_format` json_schema.

Thinking: on a target that takes `reasoning_effort` (`reasoning=True`), `thinking: {type: enabled}` maps its
`budget_tokens` to an effort (under 4,096 low, under 16,384 medium, else high), and `output_config.effort` maps
low / medium / high (xhigh and max -> high), the effort winning over the budget; adaptive thinking without an
effort leaves the model's default. On a target with its own thinking switch (`thinking=True`: Gemini's
`thinkingConfig`, Claude on Bedrock), the `thinking` object itself is carried in the Chat Completions request under
`thinking` (a field only those providers read; `llm.providers.gemini`, `llm.providers.bedrock`). On any other
target thinking is dropped, and so is an effort the target cannot take.

Prompt caching: on a target that places cache points (`cache=True`: Claude and Nova on Bedrock) each `cache_control`
marker, the top-level one included, is carried on the part it marks and checked as Anthropic checks it
(`llm.messages.cache`: at most four, longer TTLs first, a 400 otherwise); a marked system prompt stays text parts.

Dropped, and named in `ChatTranslation.dropped` so the door can say so (`x-agenthub-dropped`): `top_k`,
`cache_control` markers on any other target (OpenAI-style providers cache prompts by themselves), `thinking` and
`effort` where the target has no reasoning effort, thinking blocks of earlier turns (`thinking_blocks`) except those
the target itself signed (Claude on Bedrock: signed `thinking` and `redacted_thinking`; Gemini: thoughts signed by
Gemini), which go back to it in the assistant message's `thinking_blocks` (`llm.signatures`), `citations`, unknown
tool and `output_config` fields, and any other top-level field (`service_tier`, `context_management`, ...), each by
its name.

Refused with `UnsupportedParameter`: server tools and Anthropic-defined tools (web search and fetch, code
execution, bash, text editor, computer, memory, tool search) and their blocks in the history, `mcp_servers` and
`container`. A malformed body is `InvalidRequest`, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm.errors import UnsupportedParameter
from llm.messages._drops import Drops
from llm.messages.cache import CacheMarks, mark_last
from llm.messages.turns import chat_messages, system_text
from llm.schema import JSON, InvalidRequest

__all__ = ["ChatTranslation", "to_chat"]

_REFUSED_FIELDS = frozenset({"mcp_servers", "container"})
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "metadata",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)
_TOOL_FIELDS = frozenset({"type", "name", "description", "input_schema", "strict"})
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


@dataclass(frozen=True, slots=True)
class ChatTranslation:
    """The Chat Completions request, and the features of the Messages request that it leaves out."""

    request: JSON
    dropped: tuple[str, ...] = ()

    @property
    def dropped_header(self) -> str | None:
        """The dropped features as one header value (`thinking,top_k`), None when nothing was dropped."""
        return ",".join(self.dropped) or None


def _invalid(where: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"invalid request: {where}: {what}")


def _tools(tools: Any, drops: Drops, marks: CacheMarks) -> list[JSON]:
    if not isinstance(tools, list):
        raise _invalid("tools", "must be a list")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid(f"tools[{i}]", "must be an object")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise UnsupportedParameter(f"tools[{i}] ({kind!r}: a server tool or an Anthropic-defined tool)")
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise _invalid(f"tools[{i}]", "custom tools need a string name and an input_schema object")
        function: JSON = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        for key in tool:
            if key not in _TOOL_FIELDS and key != "cache_control":
                drops.add(f"tools.{key}")
        entry: JSON = {"type": "function", "function": function}
        if "cache_control" in tool:
            marker = marks.mark(tool, f"tools[{i}]")
            if marker is not None:
                entry["cache_control"] = marker
        out.append(entry)
    return out


def _tool_choice(choice: Any, request: JSON) -> None:
    """Set `tool_choice` (and `parallel_tool_calls`); without tools both mean nothing, and OpenAI refuses them."""
    if not isinstance(choice, dict):
        raise _invalid("tool_choice", "must be an object")
    kind = choice.get("type")
    value: str | JSON
    if kind in _CHOICES:
        value = _CHOICES[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        value = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _invalid("tool_choice", "type must be auto, any, tool (with a name) or none")
    if "tools" in request:
        request["tool_choice"] = value
        if choice.get("disable_parallel_tool_use") is True:
            request["parallel_tool_calls"] = False


def _budget_effort(budget: Any) -> str | None:
    if not isinstance(budget, int) or isinstance(budget, bool):
        return None
    if budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


def _reasoning(
    thinking: Any, config: Mapping[str, Any], reasoning: bool, switch: bool, request: JSON, drops: Drops
) -> None:
    """Set `reasoning_effort` (and, where the target has its own switch, `thinking`) on the Chat Completions
    request; records what the target cannot take."""
    if thinking is not None and not isinstance(thinking, dict):
        raise _invalid("thinking", "must be an object")
    kind = thinking.get("type") if thinking else None
    effort = config.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise _invalid("output_config.effort", "must be low, medium, high, xhigh or max")
    if switch and thinking:
        request["thinking"] = dict(thinking)
    elif kind not in (None, "disabled") and not reasoning:
        drops.add("thinking")
    if not reasoning:
        if effort is not None:
            drops.add("effort")
        return
    carried = switch and thinking  # the budget travels in the carried object itself
    wanted = _budget_effort(thinking.get("budget_tokens")) if thinking and kind == "enabled" and not carried else None
    if effort is not None:
        wanted = _EFFORTS[effort]
    if wanted is not None:
        request["reasoning_effort"] = wanted


def _output_config(config: Any, request: JSON, drops: Drops) -> Mapping[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise _invalid("output_config", "must be an object")
    fmt = config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        request["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    elif fmt is not None:
        raise _invalid("output_config.format", "must be a json_schema format with a schema object")
    for key in config:
        if key not in ("effort", "format"):
            drops.add(f"output_config.{key}")
    return config


def _sampling(body: Mapping[str, Any], request: JSON, drops: Drops) -> None:
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens", "must be a positive integer")
    request["max_completion_tokens"] = max_tokens
    for field in ("temperature", "top_p"):
        value = body.get(field)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _invalid(field, "must be a number")
            request[field] = value
    if body.get("top_k") is not None:
        drops.add("top_k")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _invalid("stop_sequences", "must be a list of strings")
        if stops:
            request["stop"] = list(stops)


def _metadata(metadata: Any, request: JSON, drops: Drops) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "must be an object")
    for key, value in metadata.items():
        if key == "user_id" and isinstance(value, str):
            request["user"] = value
        elif key != "user_id" or value is not None:
            drops.add(f"metadata.{key}")


def _top_level_mark(marker: Any, messages: list[JSON], marks: CacheMarks) -> None:
    """Anthropic's automatic caching: the top-level marker goes on the conversation's last block."""
    if not marks.carried:
        marks.mark({"cache_control": marker}, "cache_control")
        return
    plain = marks.check(marker, "cache_control", counted=False)
    if messages and mark_last(messages[-1], plain):
        marks.count(plain, "messages")


def to_chat(
    body: object,
    *,
    reasoning: bool = False,
    thinking: bool = False,
    signatures: str | None = None,
    cache: bool = False,
) -> ChatTranslation:
    """Translate a Messages request body (the parsed JSON) into a Chat Completions request for a non-Anthropic
    target.

    `reasoning` says whether the target takes `reasoning_effort` (OpenAI's reasoning models, Gemini and other
    OpenAI-compatible reasoning endpoints); `thinking`, whether it takes Anthropic's `thinking` object through its
    own switch (Gemini, Claude on Bedrock). With neither, thinking is dropped and reported. `signatures`: whose
    thinking signatures the target verifies (`anthropic` or `gemini`, see `llm.messages.turns.chat_messages`): the
    earlier turns' thinking blocks it signed are carried back to it, the others dropped. `cache`: whether the target
    places cache points from the `cache_control` markers (Claude and Nova on Bedrock); otherwise they are dropped.

    Raises:
        InvalidRequest: the body is not a valid Messages request (the message names the field), or its cache
            markers are not what Anthropic accepts (checked only when `cache`).
        UnsupportedParameter: the request uses a feature that has no translation (server tools, MCP servers).
    """
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    drops = Drops()
    marks = CacheMarks(drops, carried=cache)
    for key in body:
        if key in _REFUSED_FIELDS:
            raise UnsupportedParameter(key)
        if key not in _HANDLED and key not in ("top_k", "cache_control"):
            drops.add(key)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "must be a non-empty string")
    messages = chat_messages(body.get("messages"), drops, signatures, marks)
    if body.get("cache_control") is not None:
        _top_level_mark(body["cache_control"], messages, marks)
    system = body.get("system")
    if system is not None:
        text = system_text(system, drops, marks)
        if text:
            messages.insert(0, {"role": "system", "content": text})
    request: JSON = {"model": model, "messages": messages}
    _sampling(body, request, drops)
    if body.get("tools"):
        request["tools"] = _tools(body["tools"], drops, marks)
    marks.finish()
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], request)
    _metadata(body.get("metadata"), request, drops)
    config = _output_config(body.get("output_config"), request, drops)
    _reasoning(body.get("thinking"), config, reasoning, thinking, request, drops)
    if body.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return ChatTranslation(request, drops.names())

"""An OpenAI chat completion as an Anthropic Messages response, and the pieces the stream translator shares.

Content: the reasoning comes first. A provider that signs it (Claude on Bedrock, Gemini) reports it in
`thinking_blocks`, which become `thinking` blocks with their signatures and `redacted_thinking` blocks, in order
(`llm.signatures`); otherwise a `reasoning_content` (or `reasoning`) string becomes a `thinking` block with an
empty signature; the text, or a refusal, a `text` block; each tool call a
`tool_use` block whose `input` is the parsed arguments. Arguments that are not a JSON object are kept whole
under `{"raw_arguments": "..."}`, so nothing the model said is lost and the client's schema check rejects the
call visibly instead of running it with `{}`.

Stop reasons: stop -> end_turn, or stop_sequence when the provider says which stop string matched (vLLM and
others put it in the choice's `stop_reason`; OpenAI does not say, so its stops are end_turn); length ->
max_tokens; tool_calls (or any stop with tool calls) -> tool_use; content_filter -> refusal.

Usage: OpenAI's `prompt_tokens` include cached tokens, Anthropic's `input_tokens` exclude both cache reads and
cache writes, so input_tokens = prompt_tokens - cached_tokens - cache writes (when the provider reports them, as
`prompt_tokens_details.cache_creation_tokens` / `cache_write_tokens`). Writes are split by TTL in
`cache_creation` (`ephemeral_1h_input_tokens` from `cache_write_1h_tokens`, the rest 5-minute writes), as
Anthropic reports them; only Claude on Bedrock reports writes among the translated providers today (OpenAI, Azure
and Gemini report cache reads only). Reasoning tokens are reported as
`output_tokens_details.thinking_tokens` (already inside `output_tokens`, as on both wires).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from llm.errors import ProviderResponseError
from llm.schema import JSON, text_of

__all__ = ["from_chat", "message_id", "signed_thinking", "stop_reason", "tool_input", "usage_from_chat"]

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    """A fresh Anthropic-style message id."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_chat(usage: Any) -> JSON:
    """An OpenAI `usage` object as Anthropic's (zeros when absent: Anthropic's clients require the object)."""
    raw: Mapping[str, Any] = usage if isinstance(usage, dict) else {}
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = _int(details.get("cached_tokens"))
    written = _int(details.get("cache_creation_tokens") or details.get("cache_write_tokens"))
    prompt = _int(raw.get("prompt_tokens"))
    out: JSON = {
        "input_tokens": max(0, prompt - cached - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": _int(raw.get("completion_tokens")),
    }
    if written:
        hour = min(_int(details.get("cache_write_1h_tokens")), written)
        out["cache_creation"] = {"ephemeral_5m_input_tokens": written - hour, "ephemeral_1h_input_tokens": hour}
    output_details = raw.get("completion_tokens_details")
    if isinstance(output_details, dict) and _int(output_details.get("reasoning_tokens")):
        out["output_tokens_details"] = {"thinking_tokens": output_details["reasoning_tokens"]}
    return out


def stop_reason(
    finish: Any, matched: Any, stop_sequences: Sequence[str], has_tool_calls: bool
) -> tuple[str, str | None]:
    """Anthropic's (`stop_reason`, `stop_sequence`) for an OpenAI finish reason.

    `matched` is what the provider says stopped it (a choice's `stop_reason`, where it reports one).
    """
    if has_tool_calls and finish in (None, "stop", "tool_calls", "function_call"):
        return "tool_use", None
    if finish in (None, "stop") and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return _FINISH.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def tool_input(arguments: Any) -> JSON:
    """Tool-call arguments (JSON text) as the object Anthropic's `input` must be; see the module docstring."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"raw_arguments": arguments}
    return value if isinstance(value, dict) else {"raw_arguments": arguments}


def signed_thinking(blocks: Any) -> list[JSON]:
    """A message's `thinking_blocks` (signed `thinking` and `redacted_thinking`, as a provider that signs its
    reasoning reports them) as Anthropic content blocks, in order."""
    out: list[JSON] = []
    for block in blocks if isinstance(blocks, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
        elif kind == "thinking":
            text, signature = block.get("thinking"), block.get("signature")
            out.append(
                {
                    "type": "thinking",
                    "thinking": text if isinstance(text, str) else "",
                    "signature": signature if isinstance(signature, str) else "",
                }
            )
    return out


def _reasoning_text(message: Mapping[str, Any]) -> str:
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def from_chat(response: Mapping[str, Any], model: str, *, stop_sequences: Sequence[str] = ()) -> JSON:
    """Translate an OpenAI `chat.completion` into an Anthropic `message` for `model` (the name the client asked
    for). `stop_sequences` are the request's, to recognise a matched stop string when the provider names it.

    Raises:
        ProviderResponseError: the completion has no choice with a message.
    """
    choices = response.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice else None
    if choice is None or not isinstance(message, dict):
        raise ProviderResponseError("chat completion without a message")
    content: list[JSON] = signed_thinking(message.get("thinking_blocks"))
    thinking = _reasoning_text(message) if not content else ""
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = text_of(message.get("content"))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        text = text or refusal
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments")),
            }
        )
    has_calls = any(block["type"] == "tool_use" for block in content)
    finish = "content_filter" if isinstance(refusal, str) and refusal else choice.get("finish_reason")
    reason, sequence = stop_reason(finish, choice.get("stop_reason"), stop_sequences, has_calls)
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_from_chat(response.get("usage")),
    }

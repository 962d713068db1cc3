"""One Anthropic Messages request on one hop: a faithful pass-through to an Anthropic deployment, a translation
through Chat Completions for any other provider. The router runs these per hop, with its plan, retries,
fallbacks and cooldowns (`Router.messages`, `Router.stream_messages`, `Router.count_tokens`).

Pass-through: the body goes upstream as the client's bytes with only the top-level `model` value replaced by the
deployment's model id (`outbound`). Two cases send a re-encoded body instead: the body was changed on its way
(an input guardrail redacted it, so `MessagesRequest.raw` is None), or it carries `thinking` blocks without a
signature or with Gemini's (they come from a turn another provider answered through a translation, and Anthropic
refuses them), which are stripped. The response is relayed as received: a body as its bytes (`RawJSON`), a stream
as the bytes of each read. The stream's events are still read on the way (`MessagesStreamObserver`): usage with
cache reads and writes, text and tool input for output guardrails; an `error` event before the first content fails
the hop (so an `overloaded_error` falls back like a 529).

Translation: `llm.messages.to_chat` -> the provider's `chat` / `stream_chat` -> `from_chat` /
`ChatStreamTranslator`; the features the translation left out are reported (`dropped`). Thinking maps to
`reasoning_effort` on the OpenAI-shaped kinds for reasoning models (`o1`.., `gpt-5`..), to Gemini's
`thinkingConfig` (with `output_config.effort` as `reasoning_effort`) for the models that think (2.5 and later), to
Bedrock's `additionalModelRequestFields.thinking` for the Claude models that think (3.7 and 4.x) except on a
request that answers tools without the signed thinking that began its turn (`_answers_tools`), and is dropped
elsewhere. The thinking they send back (Gemini's thought parts, Bedrock's `reasoningContent`) becomes `thinking`
blocks, signed where the provider signs it (`llm.signatures`: Claude's signatures as they are, Gemini's marked), and
those blocks go back to the provider that signed them on the next turn (`signatures` of `to_chat`).

A stream item is a dict: `raw` (the bytes for the client), `types` (the type of each event they hold), `events`
(the parsed events) and, when the item changed the usage, `usage` (`llm.schema.Usage`, cumulative). A relayed item
(`StreamItem`) reads its `types` and `events` when first asked for: a relay without output filters sends the bytes
and reads only the usage, which the observer parsed on the way (`MessagesStreamObserver.split`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from llm.errors import ProviderHTTPError
from llm.messages import (
    ERROR_STATUS,
    ChatStreamTranslator,
    ChatTranslation,
    MessagesStreamObserver,
    encode_event,
    estimate_input_tokens,
    from_chat,
    to_chat,
)
from llm.messages.observer import SplitEvents
from llm.messages.usage import read_usage
from llm.providers import Provider
from llm.providers.anthropic import AnthropicProvider
from llm.providers.bedrock import takes_cache_points
from llm.schema import JSON, Usage
from llm.signatures import is_gemini

__all__ = [
    "MessagesReply",
    "MessagesRequest",
    "StreamItem",
    "count_tokens",
    "has_content",
    "outbound",
    "replace_model",
    "send",
    "stream",
    "usage_of",
]

_REASONING_KINDS = frozenset({"openai", "azure", "openai-compatible"})
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
_GEMINI_THINKING = re.compile(r"^(models/)?gemini-(2\.5|[3-9])")
_BEDROCK_THINKING = re.compile(r"(^|\.)anthropic\.claude-(3-7-|(sonnet|opus|haiku)-[4-9])")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]')
_SPACE = b" \t\r\n"
_MODEL_LETTERS = frozenset({b"6d", b"6f", b"64", b"65", b"6c"})
_NOT_CONTENT = frozenset({"message_start", "ping"})
_NOT_CONTENT_LINES = frozenset({b"event: message_start", b"event: ping"})
_USAGE_EVENTS = frozenset({b"event: message_start", b"event: message_delta"})


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """A Messages request as the door read it."""

    body: Mapping[str, Any]
    """The parsed body (what routing, translation and the guardrails read)."""
    raw: bytes | None = None
    """The body's bytes as received; None when `body` is no longer what they say (a redaction changed it)."""
    headers: Mapping[str, str] | None = None
    """`anthropic-version` and `anthropic-beta` for an Anthropic upstream."""
    query: str = ""
    """`?beta=true` when the client sent it (passed on to an Anthropic upstream)."""

    @property
    def model(self) -> str:
        """The model the client asked for (named in translated responses)."""
        return str(self.body.get("model", ""))

    @property
    def stop_sequences(self) -> Sequence[str]:
        stops = self.body.get("stop_sequences")
        return [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else ()


@dataclass(frozen=True, slots=True)
class MessagesReply:
    """One hop's whole answer: the Messages response (the provider's bytes, or a translated dict), its usage and
    what the translation dropped."""

    response: Mapping[str, Any]
    usage: Usage | None
    dropped: tuple[str, ...] = ()


# -- the outbound body ---------------------------------------------------------------------------------------------


def replace_model(raw: bytes, model: str, current: str | None = None) -> bytes | None:
    """`raw` (a JSON object) with the value of its top-level `model` member replaced by `model`, every other byte
    kept; None when that cannot be shown safely (no such member, not a string, or more than one).

    `current`, the member's parsed value, allows the quick way (`_quick_replace`); without it, or where the quick way
    cannot show which member is the top-level one, the body is walked token by token."""
    if current is not None:
        quick = _quick_replace(raw, model, current)
        if quick is not None:
            return quick
    spans: list[tuple[int, int]] = []
    depth = 0
    end = len(raw)
    tokens = _TOKEN.finditer(raw)
    for token in tokens:
        first = raw[token.start()]
        if first != 0x22:  # a bracket
            depth += 1 if first in b"{[" else -1
            continue
        if depth != 1:
            continue
        after = token.end()
        while after < end and raw[after] in _SPACE:
            after += 1
        if after >= end or raw[after] != 0x3A:  # ':' : this string is a value, not a key
            continue
        if _key(token.group()) != "model":
            continue
        value = next(tokens, None)
        start = after + 1
        while start < end and raw[start] in _SPACE:
            start += 1
        if value is None or value.start() != start or raw[start] != 0x22:
            return None
        spans.append((value.start(), value.end()))
    if len(spans) != 1:
        return None
    start, stop = spans[0]
    return raw[:start] + orjson.dumps(model) + raw[stop:]


def _quick_replace(raw: bytes, model: str, current: str) -> bytes | None:
    """The replacement without walking the body, when the bytes alone show where the top-level member is.

    With no unicode escape that could spell a letter of `model`, the parsed body's top-level `model` member (a string,
    `current`) is written as `"model"`, a colon and a string. So when exactly one `"model"` followed by a colon has a
    string after it, that one is the top-level member (a duplicate member, or a nested `model` with a string value,
    would make two: then the walk decides); nested ones with another kind of value (the `model` property of a tool's
    schema, as Claude Code's tools have) are passed over. Its value must be `current` as JSON encodes it."""
    if _may_spell_model(raw):
        return None
    end = len(raw)
    found = -1
    key = raw.find(b'"model"')
    while key >= 0:
        at = key + 7
        while at < end and raw[at] in _SPACE:
            at += 1
        if at < end and raw[at] == 0x3A:  # ':' (anything else: not a key)
            at += 1
            while at < end and raw[at] in _SPACE:
                at += 1
            if at < end and raw[at] == 0x22:  # a string value
                if found >= 0:
                    return None
                found = at
        key = raw.find(b'"model"', key + 7)
    value = orjson.dumps(current)
    if found < 0 or not raw.startswith(value, found):
        return None
    return b"".join((raw[:found], orjson.dumps(model), raw[found + len(value) :]))


def _may_spell_model(raw: bytes) -> bool:
    """Whether `raw` has a unicode escape (backslash, `u00XX`) of a letter of `model`, which could hide a key."""
    at = raw.find(b"\\u00")
    while at >= 0:
        if raw[at + 4 : at + 6].lower() in _MODEL_LETTERS:
            return True
        at = raw.find(b"\\u00", at + 4)
    return False


def _key(token: bytes) -> str | None:
    if b"\\" not in token:
        return token[1:-1].decode("utf-8", "replace")
    try:
        value = orjson.loads(token)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def _unsigned_thinking(block: Any) -> bool:
    """A thinking block Anthropic cannot verify: no signature, or another provider's (`llm.signatures`)."""
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not signature or is_gemini(signature)


def _without_unsigned_thinking(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of `body` without the unsigned thinking blocks of its assistant turns; None when it has none."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    changed = False
    kept: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(_unsigned_thinking(b) for b in content):
            changed = True
            message = {**message, "content": [b for b in content if not _unsigned_thinking(b)]}
        kept.append(message)
    return {**body, "messages": kept} if changed else None


def outbound(request: MessagesRequest, model: str) -> bytes:
    """The body to send to an Anthropic deployment whose model id is `model` (see the module docstring)."""
    stripped = _without_unsigned_thinking(request.body)
    if stripped is None and request.raw is not None:
        if request.body.get("model") == model:
            return request.raw
        current = request.body.get("model")
        replaced = replace_model(request.raw, model, current if isinstance(current, str) else None)
        if replaced is not None:
            return replaced
    return orjson.dumps({**(stripped or request.body), "model": model})


def _answers_tools(body: Mapping[str, Any]) -> bool:
    """Whether the last message holds tool results. With thinking on, Claude then wants the signed thinking that
    began the turn which called the tools (Bedrock refuses the request without it): when the client did not send
    it back (`_starts_signed`), such a request goes without thinking (named dropped)."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _starts_signed(body: Mapping[str, Any]) -> bool:
    """Whether the assistant turn before the last message starts with thinking Claude signed (or redacted), which
    goes back to Bedrock with it (`llm.signatures`)."""
    messages = body.get("messages")
    turn = messages[-2] if isinstance(messages, list) and len(messages) > 1 else None
    content = turn.get("content") if isinstance(turn, dict) and turn.get("role") == "assistant" else None
    first = content[0] if isinstance(content, list) and content else None
    if not isinstance(first, dict):
        return False
    if first.get("type") == "redacted_thinking":
        return isinstance(first.get("data"), str)
    signature = first.get("signature")
    return (
        first.get("type") == "thinking" and isinstance(signature, str) and bool(signature) and not is_gemini(signature)
    )


def _translation(provider: Provider, body: Mapping[str, Any], model: str, stream: bool) -> ChatTranslation:
    """The Chat Completions request for `provider`, with thinking mapped where its kind and model take it, and the
    earlier turns' thinking carried back to the provider that signed it."""
    kind = provider.config.kind
    gemini = kind == "gemini" and _GEMINI_THINKING.match(model) is not None
    reasoning = gemini or (kind in _REASONING_KINDS and _REASONING_MODEL.match(model) is not None)
    claude = kind == "bedrock" and _BEDROCK_THINKING.search(model) is not None
    claude_thinks = claude and (not _answers_tools(body) or _starts_signed(body))
    thinking = gemini or claude_thinks
    on = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") in ("enabled", "adaptive")
    signatures = "gemini" if kind == "gemini" else "anthropic" if claude_thinks and on else None
    cache = kind == "bedrock" and takes_cache_points(model)
    return to_chat(
        {**body, "stream": stream}, reasoning=reasoning, thinking=thinking, signatures=signatures, cache=cache
    )


# -- one hop -------------------------------------------------------------------------------------------------------


async def send(provider: Provider, request: MessagesRequest, model: str, key: str) -> MessagesReply:
    """One non-streamed Messages request on one hop."""
    if isinstance(provider, AnthropicProvider):
        body = outbound(request, model)
        response = await provider.messages(body, model, key, request.headers or {}, request.query)
        return MessagesReply(response, read_usage(response.get("usage")))
    translation = _translation(provider, request.body, model, False)
    completion = await provider.chat(translation.request, model, key)
    message = from_chat(completion, request.model, stop_sequences=request.stop_sequences)
    return MessagesReply(message, Usage.from_openai(completion.get("usage")), translation.dropped)


async def count_tokens(provider: Provider, request: MessagesRequest, model: str, key: str) -> MessagesReply:
    """`count_tokens` on one hop: Anthropic's count, or the documented estimate for any other provider."""
    if isinstance(provider, AnthropicProvider):
        answer = await provider.count_tokens(outbound(request, model), model, key, request.headers or {})
        return MessagesReply(answer, None)
    return MessagesReply({"input_tokens": estimate_input_tokens(request.body)}, None)


def stream(
    provider: Provider, request: MessagesRequest, model: str, key: str, dropped: dict[tuple[str, str], tuple[str, ...]]
) -> AsyncIterator[JSON]:
    """One streamed Messages request on one hop, as items (see the module docstring). A translation records what
    it dropped in `dropped[(provider, model)]`."""
    if isinstance(provider, AnthropicProvider):
        return _relayed(provider, request, model, key)
    translation = _translation(provider, request.body, model, True)
    dropped[(provider.name, model)] = translation.dropped
    return _translated(provider, translation.request, request, model, key)


class StreamItem(dict[str, Any]):
    """A relayed stream item: `raw`, and `usage` when it changed; `types` and `events` are read from the split
    events when first asked for (`item["types"]`, `item["events"]`; `get` does not read them)."""

    __slots__ = ("split",)

    def __init__(self, raw: bytes, split: SplitEvents) -> None:
        super().__init__(raw=raw)
        self.split = split
        """The events of `raw`, as the observer split them."""

    def __missing__(self, key: str) -> Any:
        if key == "events":
            value: Any = self.split.events()
        elif key == "types":
            value = self.split.types()
        else:
            raise KeyError(key)
        self[key] = value
        return value


async def _relayed(provider: AnthropicProvider, request: MessagesRequest, model: str, key: str) -> AsyncIterator[JSON]:
    observer = MessagesStreamObserver()
    body = outbound(request, model)
    async with provider.open_messages_stream(body, model, key, request.headers or {}, request.query) as stream:
        async for raw in stream.chunks():
            split = observer.split(raw)
            if observer.error is not None:
                kind = observer.error.get("type")
                status = ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
                raise ProviderHTTPError(
                    status, code=kind if isinstance(kind, str) else None, provider=provider.name, model=model
                )
            item = StreamItem(raw, split)
            if split.parsed and any(split.names[at] in _USAGE_EVENTS for at in split.parsed):
                item["usage"] = observer.usage.to_usage()
            yield item


async def _translated(
    provider: Provider, chat: JSON, request: MessagesRequest, model: str, key: str
) -> AsyncIterator[JSON]:
    translator = ChatStreamTranslator(
        request.model, stop_sequences=request.stop_sequences, input_tokens=estimate_input_tokens(request.body)
    )
    async for chunk in provider.stream_chat(chat, model, key):
        item = _item(translator.feed(chunk))
        usage = Usage.from_openai(chunk.get("usage"))
        if usage is not None:
            item["usage"] = usage
        if item["events"] or usage is not None:
            yield item
        if translator.done:
            return
    tail = translator.close()
    if tail:
        yield _item(tail)


def _item(events: list[JSON]) -> JSON:
    raw = b"".join(encode_event(e) for e in events)
    return {"raw": raw, "types": [e.get("type") for e in events], "events": events}


def has_content(item: JSON) -> bool:
    """Whether a stream item holds more than the message's start: the router's first content."""
    if isinstance(item, StreamItem):
        return not _NOT_CONTENT_LINES.issuperset(item.split.names)
    return any(kind not in _NOT_CONTENT for kind in item["types"])


def usage_of(item: JSON) -> Usage | None:
    """The cumulative usage an item carries, if it changed it."""
    return item.get("usage")

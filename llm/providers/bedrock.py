"""AWS Bedrock Runtime `Converse` and `ConverseStream`, signed with SigV4.

Request: system -> `system` blocks; text and inline images (data URLs); assistant tool calls -> `toolUse`,
tool messages -> `toolResult`; tools -> `toolConfig`; max tokens, temperature, top_p, stop ->
`inferenceConfig`. Refused: n>1, seed, logprobs, non-text response_format, remote image URLs,
tool_choice "none". Streams are AWS event-stream frames (CRC-checked), usage comes from the `metadata` event: cache
reads and writes, the writes split into 5-minute and 1-hour ones by `cacheDetails`.
Thinking (Claude on Bedrock): Anthropic's `thinking` object (which the Messages translation carries under
`thinking`) goes to the model unchanged in `additionalModelRequestFields`; the `reasoningContent` it answers with
(whole, or streamed as deltas) comes back as `reasoning_content`, and with its `signature` and the
`redactedContent` blocks in `thinking_blocks` (`{"type": "thinking", "thinking", "signature"}`,
`{"type": "redacted_thinking", "data"}`; streamed: a `signature` or a `redactedContent` delta as one such entry).
An assistant message's `thinking_blocks` go back as its first blocks, `reasoningContent` with `reasoningText`
(text and signature) or `redactedContent`, as Claude requires in a tool-use loop with thinking on.
Prompt caching (Claude 3.5 Haiku, 3.7 and 4.x; Nova, whose tools are not cached): a `cache_control` marker
(`{"type": "ephemeral", "ttl": "5m" | "1h"}`) on a content part, a tool call, a function tool or a whole message
becomes a `cachePoint` right after the block it marks (`{"type": "default"}`, with the `ttl` when the marker has
one and the model takes it: a 1-hour TTL on Claude 4.5 and later only, elsewhere the default 5 minutes); on a
system message's text part, in `system`. Models without prompt caching get no cache points. The Messages
translation sends at most four (`llm.messages.cache`); Bedrock refuses more.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson

from llm.errors import ProviderHTTPError, ProviderResponseError, UnsupportedParameter, safe_code
from llm.eventstream import EventStreamDecoder
from llm.providers.base import Provider, loads, refuse
from llm.providers.content import arguments_of, data_url, dumps_str, max_tokens, merge_roles, stop_list, system_text
from llm.schema import JSON, Usage, chat_chunk, chat_response, new_id, text_of
from llm.sigv4 import SigV4Signer

__all__ = ["BedrockProvider", "takes_cache_points"]

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_EXCEPTION_STATUS = {
    "throttlingException": 429,
    "serviceUnavailableException": 503,
    "internalServerException": 500,
    "modelStreamErrorException": 502,
    "validationException": 400,
}
_CACHING = re.compile(r"(^|\.)(anthropic\.claude-(3-5-haiku|3-7-|(sonnet|opus|haiku)-[4-9])|amazon\.nova-)")
_TOOLS_UNCACHED = re.compile(r"(^|\.)amazon\.nova-")
_HOUR_TTL = re.compile(r"(^|\.)anthropic\.claude-(sonnet|opus|haiku)-(4-[5-9]|[5-9])")
_REFUSED = {
    "n": lambda v: v != 1,
    "seed": lambda v: True,
    "logprobs": bool,
    "top_logprobs": lambda v: True,
    "response_format": lambda v: not (isinstance(v, dict) and v.get("type") == "text"),
}


def takes_cache_points(model: str) -> bool:
    """Whether a Bedrock model id (or inference profile, e.g. `us.anthropic.claude-...`) offers prompt caching."""
    return _CACHING.search(model) is not None


def _longest_ttl(model: str) -> str | None:
    """The longest cache TTL `model` takes (`1h` or `5m`), None when it offers no prompt caching."""
    if not takes_cache_points(model):
        return None
    return "1h" if _HOUR_TTL.search(model) else "5m"


def _point(blocks: list[JSON], marker: Any, cache: str | None) -> None:
    """Append a `cachePoint` for a `cache_control` marker, right after the block it marks (none before any block,
    and one only where two markers meet); `cache` is the model's longest TTL."""
    if not cache or not isinstance(marker, dict) or not blocks or "cachePoint" in blocks[-1]:
        return
    point: JSON = {"type": "default"}
    ttl = marker.get("ttl")
    if ttl == "5m" or (ttl == "1h" and cache == "1h"):
        point["ttl"] = ttl
    blocks.append({"cachePoint": point})


def _blocks(content: Any, provider: str, model: str, cache: str | None = None) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[JSON] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"text": part.get("text", "")})
        elif kind == "image_url":
            spec = part.get("image_url")
            inline = data_url(spec.get("url", "") if isinstance(spec, dict) else str(spec or ""))
            if inline is None:
                raise UnsupportedParameter("image_url (remote URL)", provider=provider, model=model)
            fmt = inline[0].rpartition("/")[2].replace("jpg", "jpeg")
            blocks.append({"image": {"format": fmt, "source": {"bytes": inline[1]}}})
        else:
            raise UnsupportedParameter(f"content part {kind!r}", provider=provider, model=model)
        _point(blocks, part.get("cache_control"), cache)
    return blocks


def _reasoning(blocks: Any) -> list[JSON]:
    """An assistant message's signed `thinking_blocks` as the `reasoningContent` blocks Claude wants back first."""
    out: list[JSON] = []
    for block in blocks if isinstance(blocks, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"reasoningContent": {"redactedContent": block["data"]}})
        elif kind == "thinking" and isinstance(block.get("signature"), str) and block["signature"]:
            text = {"text": str(block.get("thinking") or ""), "signature": block["signature"]}
            out.append({"reasoningContent": {"reasoningText": text}})
    return out


def _tool_marker(content: Any) -> Any:
    """The cache marker of a `tool` message's content parts (the last one), if any."""
    marks = [p["cache_control"] for p in content if isinstance(p, dict) and "cache_control" in p]
    return marks[-1] if marks else None


def _message(message: JSON, provider: str, model: str, cache: str | None = None) -> JSON:
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        result = {"toolUseId": message.get("tool_call_id", ""), "content": [{"text": text_of(content)}]}
        blocks: list[JSON] = [{"toolResult": result}]
        if cache and isinstance(content, list):
            _point(blocks, _tool_marker(content), cache)
    elif role == "assistant":
        blocks = _reasoning(message.get("thinking_blocks"))
        blocks += _blocks(content, provider, model, cache)
        for call in message.get("tool_calls") or []:
            fn = call.get("function", {})
            use = {
                "toolUseId": call.get("id", ""),
                "name": fn.get("name", ""),
                "input": arguments_of(fn.get("arguments")),
            }
            blocks.append({"toolUse": use})
            _point(blocks, call.get("cache_control"), cache)
    elif role == "user":
        blocks = _blocks(content, provider, model, cache)
    else:
        raise UnsupportedParameter(f"message role {role!r}", provider=provider, model=model)
    _point(blocks, message.get("cache_control"), cache)
    return {"role": "assistant" if role == "assistant" else "user", "content": blocks}


def _system(messages: list[JSON], cache: str) -> tuple[list[JSON], list[JSON]]:
    """The system/developer messages as `system` blocks, and the rest of the conversation. Unmarked, they are one
    text block (joined by a blank line, as `llm.providers.content.system_text`); a message with a marked text part
    gives one block a part, a `cachePoint` after each marked one."""
    blocks: list[JSON] = []
    pending: list[str] = []
    rest: list[JSON] = []
    for message in messages:
        if message.get("role") not in ("system", "developer"):
            rest.append(message)
            continue
        content = message.get("content")
        parts = content if isinstance(content, list) else []
        if not any(isinstance(p, dict) and "cache_control" in p for p in parts):
            pending.append(text_of(content))
            continue
        joined = "\n\n".join(t for t in pending if t)
        blocks += [{"text": joined}] if joined else []
        pending = []
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "text":
                blocks += [{"text": part["text"]}] if part.get("text") else []
                _point(blocks, part.get("cache_control"), cache)
        _point(blocks, message.get("cache_control"), cache)
    joined = "\n\n".join(t for t in pending if t)
    return blocks + ([{"text": joined}] if joined else []), rest


def to_converse(request: JSON, provider: str, model: str) -> JSON:
    """Translate an OpenAI chat request into a Bedrock Converse request body."""
    refuse(request, _REFUSED, provider=provider, model=model)
    cache = _longest_ttl(model)
    messages = list(request.get("messages") or [])
    if cache:
        system, rest = _system(messages, cache)
    else:
        text, rest = system_text(messages)
        system = [{"text": text}] if text else []
    body: JSON = {"messages": merge_roles([_message(m, provider, model, cache) for m in rest], "content")}
    if system:
        body["system"] = system
    inference: JSON = {}
    limit = max_tokens(request)
    if limit is not None:
        inference["maxTokens"] = limit
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if request.get(src) is not None:
            inference[dst] = request[src]
    stops = stop_list(request.get("stop"), provider, model)
    if stops:
        inference["stopSequences"] = stops
    if inference:
        body["inferenceConfig"] = inference
    thinking = request.get("thinking")
    if isinstance(thinking, dict):
        body["additionalModelRequestFields"] = {"thinking": thinking}
    tools = request.get("tools")
    if tools:
        body["toolConfig"] = _tool_config(tools, request.get("tool_choice"), provider, model, cache)
    return body


def _tool_config(tools: list[Any], choice: Any, provider: str, model: str, cache: str | None) -> JSON:
    """`toolConfig`: the tools (a `cachePoint` after each marked one, where the model caches tools) and the choice."""
    specs: list[JSON] = []
    cache_tools = cache if _TOOLS_UNCACHED.search(model) is None else None
    for t in tools:
        fn = t.get("function", {})
        spec = {
            "name": fn.get("name", ""),
            "description": fn.get("description") or fn.get("name", ""),
            "inputSchema": {"json": fn.get("parameters") or {"type": "object"}},
        }
        specs.append({"toolSpec": spec})
        _point(specs, t.get("cache_control"), cache_tools)
    tool_config: JSON = {"tools": specs}
    if choice == "none":
        raise UnsupportedParameter("tool_choice 'none'", provider=provider, model=model)
    if choice == "required":
        tool_config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        tool_config["toolChoice"] = {"tool": {"name": choice.get("function", {}).get("name", "")}}
    elif choice == "auto":
        tool_config["toolChoice"] = {"auto": {}}
    return tool_config


def _one_hour(details: Any, written: int) -> int:
    """The 1-hour part of the cache writes, from `cacheDetails` (`[{"ttl": "1h" | "5m", "inputTokens": n}]`)."""
    if not isinstance(details, list):
        return 0
    hour = sum(
        d["inputTokens"]
        for d in details
        if isinstance(d, dict) and d.get("ttl") == "1h" and type(d.get("inputTokens")) is int and d["inputTokens"] > 0
    )
    return min(hour, written)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    # inputTokens exclude the cache: reads and writes are added to the prompt. The writes are split by TTL in
    # cacheDetails; without it (or for its 5-minute entries) they went to the default 5-minute cache.
    cached = int(raw.get("cacheReadInputTokens") or 0)
    written = int(raw.get("cacheWriteInputTokens") or 0)
    hour = _one_hour(raw.get("cacheDetails"), written) if written else 0
    prompt = int(raw.get("inputTokens") or 0) + cached + written
    return Usage(prompt, int(raw.get("outputTokens") or 0), cached, written - hour, hour)


def _reasoning_delta(reasoning: JSON) -> JSON:
    """A `reasoningContent` stream delta (text, then its signature; or redacted reasoning) as a chunk's delta."""
    if isinstance(reasoning.get("text"), str):
        return {"reasoning_content": reasoning["text"]}
    if isinstance(reasoning.get("signature"), str):
        return {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": reasoning["signature"]}]}
    if isinstance(reasoning.get("redactedContent"), str):
        return {"thinking_blocks": [{"type": "redacted_thinking", "data": reasoning["redactedContent"]}]}
    return {}


def _block_delta(data: JSON, tool_index: dict[int, int]) -> JSON:
    """A `contentBlockDelta` event as a chunk's delta ({} for one that carries nothing a chunk can say)."""
    delta = data.get("delta") or {}
    if "text" in delta:
        return {"content": delta["text"]}
    if isinstance(delta.get("reasoningContent"), dict):
        return _reasoning_delta(delta["reasoningContent"])
    if "toolUse" in delta:
        index = tool_index.get(int(data.get("contentBlockIndex", 0)), 0)
        return {"tool_calls": [{"index": index, "function": {"arguments": delta["toolUse"].get("input", "")}}]}
    return {}


def from_converse(data: JSON, model: str) -> JSON:
    """Translate a Converse response into an OpenAI chat completion."""
    message = (data.get("output") or {}).get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ProviderResponseError("unexpected Bedrock response shape")
    texts: list[str] = []
    thoughts: list[str] = []
    signed: list[JSON] = []
    calls: list[JSON] = []
    for block in message["content"]:
        if "text" in block:
            texts.append(block["text"])
        elif "reasoningContent" in block:
            content = block["reasoningContent"] or {}
            reasoning = content.get("reasoningText") or {}
            if isinstance(reasoning.get("text"), str):
                thoughts.append(reasoning["text"])
                signature = reasoning.get("signature")
                if isinstance(signature, str) and signature:
                    signed.append({"type": "thinking", "thinking": reasoning["text"], "signature": signature})
            elif isinstance(content.get("redactedContent"), str):
                signed.append({"type": "redacted_thinking", "data": content["redactedContent"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                {
                    "id": use.get("toolUseId", ""),
                    "type": "function",
                    "function": {"name": use.get("name", ""), "arguments": dumps_str(use.get("input", {}))},
                }
            )
    out: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if thoughts:
        out["reasoning_content"] = "".join(thoughts)
    if signed:
        out["thinking_blocks"] = signed
    if calls:
        out["tool_calls"] = calls
    return chat_response(
        model=model,
        message=out,
        finish_reason=_STOP.get(data.get("stopReason") or "end_turn", "stop"),
        usage=_usage(data.get("usage")),
    )


class BedrockProvider(Provider):
    """Kind `bedrock`: `POST {base}/model/{modelId}/converse[-stream]`, SigV4 service `bedrock`."""

    signers: dict[str, SigV4Signer]

    def prepare(self) -> None:
        """One signer per key."""
        self.signers = {
            name: SigV4Signer(
                access_key_id=cred.access_key_id,
                secret_access_key=cred.secret,
                session_token=cred.session_token or None,
                region=self.config.region or "",
                service="bedrock",
            )
            for name, cred in self.credentials.items()
        }

    def _signed(self, key: str, url: str, body: bytes, accept: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": accept, **self.config.headers}
        return self.signers[key].sign("POST", url, headers, body)

    async def chat(self, request: JSON, model: str, key: str) -> JSON:
        """One Converse call."""
        body = orjson.dumps(to_converse(request, self.name, model))
        url = f"{self.base_url}/model/{quote(model, safe='')}/converse"
        resp = await self.transport.request(
            "POST",
            url,
            headers=self._signed(key, url, body, "application/json"),
            body=body,
            timeout=self.config.timeout,
        )
        if resp.status >= 400:
            raise self.http_error(resp.status, resp.headers, resp.body, model)
        return from_converse(loads(resp.body), model)

    async def stream_chat(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """ConverseStream events as OpenAI chunks, ending with a usage chunk from `metadata`."""
        body = orjson.dumps(to_converse(request, self.name, model))
        url = f"{self.base_url}/model/{quote(model, safe='')}/converse-stream"
        headers = self._signed(key, url, body, "application/vnd.amazon.eventstream")
        response_id = new_id()
        created = int(time.time())
        tool_index: dict[int, int] = {}
        decoder = EventStreamDecoder()
        async with self.open_stream(url, headers, body, model) as stream:
            async for raw in stream.chunks():
                for message in decoder.feed(raw):
                    kind = message.header(":message-type")
                    if kind != "event":
                        name = message.header(":exception-type") or message.header(":error-code")
                        raise ProviderHTTPError(
                            _EXCEPTION_STATUS.get(name, 500), code=safe_code(name), provider=self.name, model=model
                        )
                    event = message.header(":event-type")
                    data = loads(message.payload) if message.payload else {}
                    if event == "messageStart":
                        yield chat_chunk(response_id, model, created, delta={"role": "assistant", "content": ""})
                    elif event == "contentBlockStart":
                        use = (data.get("start") or {}).get("toolUse")
                        if use:
                            index = len(tool_index)
                            tool_index[int(data.get("contentBlockIndex", 0))] = index
                            call = {
                                "index": index,
                                "id": use.get("toolUseId", ""),
                                "type": "function",
                                "function": {"name": use.get("name", ""), "arguments": ""},
                            }
                            yield chat_chunk(response_id, model, created, delta={"tool_calls": [call]})
                    elif event == "contentBlockDelta":
                        delta = _block_delta(data, tool_index)
                        if delta:
                            yield chat_chunk(response_id, model, created, delta=delta)
                    elif event == "messageStop":
                        reason = _STOP.get(data.get("stopReason") or "end_turn", "stop")
                        yield chat_chunk(response_id, model, created, delta={}, finish_reason=reason)
                    elif event == "metadata":
                        usage = _usage(data.get("usage"))
                        if usage is not None:
                            yield chat_chunk(response_id, model, created, usage=usage)
        if decoder.pending:
            raise ProviderResponseError("event stream ended inside a message")

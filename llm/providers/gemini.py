"""Google Gemini `generateContent` / `streamGenerateContent?alt=sse`, via the Gemini API or Vertex AI.

Request: system -> `systemInstruction`; user/assistant -> `user`/`model` contents with text, inline images
(data URLs) and file URIs; assistant tool calls -> `functionCall`, tool messages -> `functionResponse`;
tools -> `functionDeclarations`; tool_choice -> `toolConfig`; n, stop, seed, penalties, max tokens and
response_format -> `generationConfig`. Refused: logprobs.
Thinking: Anthropic's `thinking` object (which the Messages translation carries under `thinking`) -> `thinkingConfig`
with its `budget_tokens` as `thinkingBudget` (adaptive: -1, the model decides) and `includeThoughts`, so the thought
summaries come back; `reasoning_effort` -> `thinkingBudget` as Gemini's own OpenAI compatibility maps it (low 1,024,
medium 8,192, high 24,576; none 0), winning over a budget. Thought parts come back as `reasoning_content`.
Thought signatures (`llm.signatures`), which Gemini 3 requires back on the function calls of the current turn: a
signed run of thought parts also comes back in `thinking_blocks` (its signature marked as Gemini's; streamed: the
signature alone, after the run's text), and goes back as those thought parts; a function-call part's signature
travels in the tool call's id and goes back on that function-call part. A signature on a plain text part (Gemini
signs the last part of an answer without function calls, and does not check it) is not kept.
Usage comes from `usageMetadata` (streams: the last one seen).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson

from llm.errors import ProviderResponseError, UnsupportedOperation, UnsupportedParameter
from llm.gcp_auth import ServiceAccountTokens
from llm.providers.base import Provider, loads, refuse
from llm.providers.content import arguments_of, call_id, data_url, dumps_str, max_tokens, stop_list, system_text
from llm.schema import JSON, Usage, chat_chunk, chat_response, new_id, text_of
from llm.signatures import (
    call_signature,
    from_gemini as from_gemini_signature,
    signed_call_id,
    to_gemini as to_gemini_signature,
)
from llm.sse import SSEDecoder

__all__ = ["GeminiProvider"]

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_REFUSED = {"logprobs": bool, "top_logprobs": lambda v: True}
_EFFORT_BUDGET = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}


def _parts(content: Any, provider: str, model: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[JSON] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            spec = part.get("image_url")
            url = spec.get("url", "") if isinstance(spec, dict) else str(spec or "")
            inline = data_url(url)
            if inline:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                parts.append({"fileData": {"fileUri": url}})
        else:
            raise UnsupportedParameter(f"content part {kind!r}", provider=provider, model=model)
    return parts


def _thought_parts(blocks: Any) -> list[JSON]:
    """An assistant message's `thinking_blocks` signed by Gemini as the thought parts they came from."""
    parts: list[JSON] = []
    for block in blocks if isinstance(blocks, list) else []:
        signature = to_gemini_signature(block.get("signature")) if isinstance(block, dict) else None
        if signature is not None and isinstance(block, dict):
            parts.append({"text": str(block.get("thinking") or ""), "thought": True, "thoughtSignature": signature})
    return parts


def _contents(messages: list[JSON], provider: str, model: str) -> list[JSON]:
    names: dict[str, str] = {}
    out: list[JSON] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            parts = _thought_parts(message.get("thinking_blocks"))
            parts += _parts(message.get("content"), provider, model)
            for call in message.get("tool_calls") or []:
                fn = call.get("function", {})
                names[call.get("id", "")] = fn.get("name", "")
                part: JSON = {"functionCall": {"name": fn.get("name", ""), "args": arguments_of(fn.get("arguments"))}}
                signature = call_signature(call.get("id"))
                if signature is not None:
                    part["thoughtSignature"] = signature
                parts.append(part)
            entry: JSON = {"role": "model", "parts": parts}
        elif role == "tool":
            text = text_of(message.get("content"))
            try:
                result = orjson.loads(text)
            except orjson.JSONDecodeError:
                result = text
            name = names.get(message.get("tool_call_id", ""), message.get("name", ""))
            response = result if isinstance(result, dict) else {"content": result}
            entry = {"role": "user", "parts": [{"functionResponse": {"name": name, "response": response}}]}
        elif role == "user":
            entry = {"role": "user", "parts": _parts(message.get("content"), provider, model)}
        else:
            raise UnsupportedParameter(f"message role {role!r}", provider=provider, model=model)
        if out and out[-1]["role"] == entry["role"]:
            out[-1]["parts"].extend(entry["parts"])
        else:
            out.append(entry)
    return out


def _generation_config(request: JSON, provider: str, model: str) -> JSON:
    config: JSON = {}
    simple = (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    )
    for src, dst in simple:
        if request.get(src) is not None:
            config[dst] = request[src]
    limit = max_tokens(request)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stops = stop_list(request.get("stop"), provider, model)
    if stops:
        config["stopSequences"] = stops
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    elif fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise UnsupportedParameter("response_format", provider=provider, model=model)
    thinking = _thinking_config(request)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(request: JSON) -> JSON:
    """`thinkingConfig` from a carried Anthropic `thinking` object and / or `reasoning_effort` (see the docstring)."""
    thinking = request.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    config: JSON = {}
    if kind == "enabled" and isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            config["thinkingBudget"] = budget
    elif kind == "adaptive":
        config["thinkingBudget"] = -1
    effort = request.get("reasoning_effort")
    if isinstance(effort, str) and effort in _EFFORT_BUDGET:
        config["thinkingBudget"] = _EFFORT_BUDGET[effort]
    if kind in ("enabled", "adaptive"):
        config["includeThoughts"] = True
    return config


def to_gemini(request: JSON, provider: str, model: str) -> JSON:
    """Translate an OpenAI chat request into a Gemini `GenerateContentRequest`."""
    refuse(request, _REFUSED, provider=provider, model=model)
    system, rest = system_text(list(request.get("messages") or []))
    body: JSON = {"contents": _contents(rest, provider, model)}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = _generation_config(request, provider, model)
    if config:
        body["generationConfig"] = config
    tools = request.get("tools")
    if tools:
        decls: list[JSON] = []
        for tool in tools:
            fn = tool.get("function", {})
            decl: JSON = {"name": fn.get("name", ""), "description": fn.get("description", "")}
            if fn.get("parameters"):
                decl["parameters"] = fn["parameters"]
            decls.append(decl)
        body["tools"] = [{"functionDeclarations": decls}]
    choice = request.get("tool_choice")
    if choice is not None:
        if isinstance(choice, dict):
            fc: JSON = {"mode": "ANY", "allowedFunctionNames": [choice.get("function", {}).get("name", "")]}
        else:
            fc = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(str(choice), "AUTO")}
        body["toolConfig"] = {"functionCallingConfig": fc}
    return body


def _usage(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    # promptTokenCount includes the cached content; candidatesTokenCount excludes the thoughts, billed as output.
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    prompt = int(meta.get("promptTokenCount") or 0)
    cached = min(int(meta.get("cachedContentTokenCount") or 0), prompt)
    return Usage(prompt, completion, cached, reasoning_tokens=thoughts)


def _candidate_delta(candidate: JSON) -> tuple[str, list[JSON], str, list[JSON]]:
    """The candidate's text, tool calls, thought text, and its thoughts as `thinking_blocks` (one per run of
    thought parts, a run ending at the part that carries its signature; see `llm.signatures`). A function call's
    signature goes into its id."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    runs: list[JSON] = []
    run: list[str] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        if "text" in part and part.get("thought"):
            thoughts.append(part["text"])
            run.append(part["text"])
            if signature is not None:
                runs.append(
                    {"type": "thinking", "thinking": "".join(run), "signature": from_gemini_signature(signature)}
                )
                run = []
        elif "text" in part:
            texts.append(part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"]
            identifier = fc.get("id") or call_id()
            calls.append(
                {
                    "id": identifier if signature is None else signed_call_id(identifier, signature),
                    "type": "function",
                    "function": {"name": fc.get("name", ""), "arguments": dumps_str(fc.get("args") or {})},
                }
            )
    if run:
        runs.append({"type": "thinking", "thinking": "".join(run), "signature": ""})
    return "".join(texts), calls, "".join(thoughts), runs


def _finish(candidate: JSON, has_calls: bool) -> str | None:
    reason = candidate.get("finishReason")
    if not reason:
        return None
    if has_calls and reason == "STOP":
        return "tool_calls"
    return _FINISH.get(reason, "stop")


def from_gemini(data: JSON, model: str) -> JSON:
    """Translate a Gemini `GenerateContentResponse` into an OpenAI chat completion."""
    candidates = data.get("candidates")
    if not isinstance(candidates, list):
        raise ProviderResponseError("unexpected Gemini response shape")
    choices: list[JSON] = []
    for position, candidate in enumerate(candidates):
        text, calls, thoughts, runs = _candidate_delta(candidate)
        message: JSON = {"role": "assistant", "content": text if text or not calls else None}
        if thoughts:
            message["reasoning_content"] = thoughts
        if any(run["signature"] for run in runs):
            message["thinking_blocks"] = runs
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "finish_reason": _finish(candidate, bool(calls)) or "stop",
                "logprobs": None,
            }
        )
    return chat_response(
        model=data.get("modelVersion") or model,
        message={},
        finish_reason=None,
        usage=_usage(data.get("usageMetadata")),
        response_id=data.get("responseId"),
        choices=choices,
    )


class GeminiProvider(Provider):
    """Kind `gemini`: the Gemini API (`x-goog-api-key`) or Vertex AI (service-account bearer token)."""

    tokens: dict[str, ServiceAccountTokens]
    headers_by_key: dict[str, dict[str, str]]

    def prepare(self) -> None:
        """Build per-key headers (Gemini API) or token caches (Vertex AI) once."""
        base = {"content-type": "application/json", **self.config.headers}
        vertex = self.config.vertex
        self.tokens = {}
        self.headers_by_key = {}
        for name, cred in self.credentials.items():
            if vertex is None:
                self.headers_by_key[name] = {**base, "x-goog-api-key": cred.secret}
            else:
                self.headers_by_key[name] = base
                self.tokens[name] = ServiceAccountTokens(
                    cred.secret, token_url=vertex.token_url, scope=vertex.scope, transport=self.transport
                )
        if vertex is None:
            self.model_root = f"{self.base_url}/models/"
        else:
            self.model_root = (
                f"{self.base_url}/projects/{vertex.project}/locations/{vertex.location}/publishers/google/models/"
            )

    async def _headers(self, key: str) -> dict[str, str]:
        tokens = self.tokens.get(key)
        if tokens is None:
            return self.headers_by_key[key]
        return {**self.headers_by_key[key], "authorization": f"Bearer {await tokens.token()}"}

    async def chat(self, request: JSON, model: str, key: str) -> JSON:
        """One chat completion."""
        body = to_gemini(request, self.name, model)
        url = f"{self.model_root}{quote(model, safe='')}:generateContent"
        return from_gemini(await self.post_json(url, await self._headers(key), body, model), model)

    async def stream_chat(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """`streamGenerateContent?alt=sse` as OpenAI chunks, ending with a usage chunk."""
        body = to_gemini(request, self.name, model)
        url = f"{self.model_root}{quote(model, safe='')}:streamGenerateContent?alt=sse"
        response_id = new_id()
        created = int(time.time())
        usage: Usage | None = None
        tool_counts: dict[int, int] = {}
        started: set[int] = set()
        decoder = SSEDecoder()
        headers = await self._headers(key)
        async with self.open_stream(url, headers, orjson.dumps(body), model) as stream:
            async for raw in stream.chunks():
                for event in decoder.feed(raw):
                    if not event.data:
                        continue
                    data = loads(event.data.encode())
                    usage = _usage(data.get("usageMetadata")) or usage
                    for position, candidate in enumerate(data.get("candidates") or []):
                        index = candidate.get("index", position)
                        text, calls, thoughts, runs = _candidate_delta(candidate)
                        delta: JSON = {}
                        if index not in started:
                            started.add(index)
                            delta["role"] = "assistant"
                        if thoughts:
                            delta["reasoning_content"] = thoughts
                        signed = [{**run, "thinking": ""} for run in runs if run["signature"]]
                        if signed:
                            delta["thinking_blocks"] = signed
                        if text:
                            delta["content"] = text
                        if calls:
                            first = tool_counts.get(index, 0)
                            delta["tool_calls"] = [{"index": first + i, **c} for i, c in enumerate(calls)]
                            tool_counts[index] = first + len(calls)
                        finish = _finish(candidate, bool(tool_counts.get(index)))
                        if delta or finish:
                            yield chat_chunk(
                                response_id, model, created, delta=delta, finish_reason=finish, index=index
                            )
        if usage is not None:
            yield chat_chunk(response_id, model, created, usage=usage)

    async def embeddings(self, request: JSON, model: str, key: str) -> JSON:
        """`batchEmbedContents` (Gemini API only) as an OpenAI embeddings list."""
        if self.config.vertex is not None:
            raise UnsupportedOperation("embeddings on Vertex AI", provider=self.name, model=model)
        inputs = request.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not all(isinstance(t, str) for t in texts):
            raise UnsupportedParameter("input (token arrays)", provider=self.name, model=model)
        body: JSON = {"requests": [{"model": f"models/{model}", "content": {"parts": [{"text": t}]}} for t in texts]}
        if request.get("dimensions"):
            for item in body["requests"]:
                item["outputDimensionality"] = request["dimensions"]
        url = f"{self.model_root}{quote(model, safe='')}:batchEmbedContents"
        data = await self.post_json(url, await self._headers(key), body, model)
        embeddings = data.get("embeddings")
        if not isinstance(embeddings, list):
            raise ProviderResponseError("unexpected Gemini embeddings shape")
        return {
            "object": "list",
            "model": model,
            "data": [
                {"object": "embedding", "index": i, "embedding": e.get("values", [])} for i, e in enumerate(embeddings)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

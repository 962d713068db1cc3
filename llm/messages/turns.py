"""The conversation of a Messages request as Chat Completions messages: turns, content blocks and tool results.

Turns: `user`, `assistant`, and the `system` turns that newer clients put between them (Claude Code's
per-turn reminders), which become system messages in place. Anthropic puts tool results in a user turn, as
blocks; Chat Completions wants one `tool` message per result, right after the assistant message that called
the tools. So a user turn becomes its `tool` messages first (in block order), then one user message with the
rest of its blocks. A `tool` message carries text only, so a result's images and documents follow in that
user message.

Documents: a base64 PDF becomes an OpenAI `file` part (the PDF as a data URL), which OpenAI models read; a
provider that cannot take a `file` part refuses it by name (`UnsupportedParameter`), so nothing is silently
lost. Plain-text and `content` documents become text (and image) parts. Documents by URL, and documents and
images by file id, are refused: the target cannot fetch Anthropic's files, and OpenAI does not fetch PDFs by
URL (images by URL pass as URLs). A tool search result's `tool_reference` (a tool that is now loaded, and
sent in `tools` from then on) becomes the tool's name as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from llm.errors import UnsupportedParameter
from llm.messages._drops import Drops
from llm.messages.cache import CacheMarks
from llm.schema import JSON, InvalidRequest
from llm.signatures import is_gemini

__all__ = ["chat_messages", "system_text"]

SERVER_BLOCKS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    }
)
"""Blocks that only Anthropic's own servers produce or read: a history holding them cannot be translated."""

_THINKING = frozenset({"thinking", "redacted_thinking"})


def _invalid(where: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"invalid request: {where}: {what}")


def _blocks(content: Any, where: str) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise _invalid(f"{where}.content", "must be a string or a list of content blocks")
    return content


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{where}.text", "must be a string")
    return text


def _system_turn(content: Any, where: str, marks: CacheMarks) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    parts: list[JSON] = []
    marked = False
    for i, block in enumerate(_blocks(content, where)):
        if block.get("type") != "text":
            raise _invalid(f"{where}[{i}]", "must be a text block")
        part: JSON = {"type": "text", "text": _text(block, f"{where}[{i}]")}
        marker = marks.mark(block, f"{where}[{i}]")
        if marker is not None:
            part["cache_control"] = marked = marker
        parts.append(part)
    if marked:
        return [p for p in parts if p["text"] or "cache_control" in p]
    return "\n\n".join(p["text"] for p in parts if p["text"])


def system_text(system: Any, drops: Drops, marks: CacheMarks | None = None) -> str | list[JSON]:
    """`system` (a string or text blocks) as one string, blocks joined by a blank line; as text parts, one a block,
    when `marks` carries cache markers and a block has one (`llm.messages.cache`)."""
    return _system_turn(system, "system", marks or CacheMarks(drops, carried=False))


def _image(source: Any, where: str) -> JSON:
    if not isinstance(source, dict):
        raise _invalid(f"{where}.source", "must be an object")
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise _invalid(f"{where}.source", "base64 sources need media_type and data")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise UnsupportedParameter(f"{where}.source ({kind!r} image source)")


def _document(block: Mapping[str, Any], where: str, drops: Drops, marks: CacheMarks) -> list[JSON]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{where}.source", "must be an object")
    if block.get("citations"):
        drops.add("citations")
    kind = source.get("type")
    title = block.get("title") if isinstance(block.get("title"), str) else None
    if kind == "base64" and source.get("media_type") == "application/pdf" and isinstance(source.get("data"), str):
        data_url = f"data:application/pdf;base64,{source['data']}"
        return [{"type": "file", "file": {"filename": title or "document.pdf", "file_data": data_url}}]
    if kind == "text" and isinstance(source.get("data"), str):
        head = f"{title}\n\n" if title else ""
        return [{"type": "text", "text": head + source["data"]}]
    if kind == "content":
        inner = _blocks(source.get("content"), f"{where}.source")
        return [part for j, b in enumerate(inner) for part in _part(b, f"{where}.source.content[{j}]", drops, marks)]
    raise UnsupportedParameter(f"{where}.source ({kind!r} document source)")


def _search_result(block: Mapping[str, Any], where: str) -> JSON:
    inner = _blocks(block.get("content"), where)
    lines = [str(block.get(k)) for k in ("title", "source") if isinstance(block.get(k), str)]
    lines += [_text(b, f"{where}.content[{j}]") for j, b in enumerate(inner) if b.get("type") == "text"]
    return {"type": "text", "text": "\n".join(lines)}


def _part(block: Mapping[str, Any], where: str, drops: Drops, marks: CacheMarks) -> list[JSON]:
    """One user-side block as Chat Completions content parts, its cache marker (if carried) on the last one."""
    parts = _parts(block, where, drops, marks)
    marker = marks.mark(block, where) if "cache_control" in block else None
    if marker is not None and parts:
        parts[-1] = {**parts[-1], "cache_control": marker}
    return parts


def _parts(block: Mapping[str, Any], where: str, drops: Drops, marks: CacheMarks) -> list[JSON]:
    kind = block.get("type")
    if kind == "text":
        if block.get("citations"):
            drops.add("citations")
        return [{"type": "text", "text": _text(block, where)}]
    if kind == "image":
        return [_image(block.get("source"), where)]
    if kind == "document":
        return _document(block, where, drops, marks)
    if kind == "search_result":
        return [_search_result(block, where)]
    if kind == "tool_reference" and isinstance(block.get("tool_name"), str):
        # Tool search's answer "this tool is now loaded": the tool itself is in `tools` from then on.
        return [{"type": "text", "text": block["tool_name"]}]
    raise UnsupportedParameter(f"{where} ({kind!r} block)")


def _tool_result(block: Mapping[str, Any], where: str, drops: Drops, marks: CacheMarks) -> tuple[JSON, list[JSON]]:
    """A `tool` message, and the result's non-text parts (they follow in a user message). A cache marker on the
    result, or on one of its text blocks (joined into the message's one text), goes on the message's text part."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.tool_use_id", "must be a non-empty string")
    content = block.get("content", "")
    texts: list[str] = []
    attached: list[JSON] = []
    marker: JSON | None = None
    if isinstance(content, str):
        texts.append(content)
    else:
        for j, inner in enumerate(_blocks(content, where)):
            for part in _part(inner, f"{where}.content[{j}]", drops, marks):
                if part["type"] == "text":
                    texts.append(part["text"])
                    marker = part.get("cache_control", marker)
                else:
                    attached.append(part)
    if "cache_control" in block:  # after the blocks inside it, in the order the prompt is cached
        marker = marks.mark(block, where) or marker
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    content: str | list[JSON] = text
    if marker is not None:
        content = [{"type": "text", "text": text, "cache_control": marker}]
    return {"role": "tool", "tool_call_id": call_id, "content": content}, attached


def _user(content: Any, where: str, drops: Drops, marks: CacheMarks) -> list[JSON]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[JSON] = []
    parts: list[JSON] = []
    attached: list[JSON] = []
    for j, block in enumerate(_blocks(content, where)):
        at = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "tool_result":
            message, extra = _tool_result(block, at, drops, marks)
            out.append(message)
            attached += extra
        elif kind in _THINKING:
            drops.add("thinking_blocks")
        elif kind in SERVER_BLOCKS:
            raise UnsupportedParameter(f"{at} ({kind!r} block of a server tool)")
        else:
            parts += _part(block, at, drops, marks)
    rest = attached + parts
    if len(rest) == 1 and rest[0]["type"] == "text" and "cache_control" not in rest[0]:
        out.append({"role": "user", "content": rest[0]["text"]})
    elif rest:
        out.append({"role": "user", "content": rest})
    return out


def _carried(block: Mapping[str, Any], signatures: str | None) -> JSON | None:
    """A thinking block of an assistant turn as the target can take it back (see `chat_messages`), or None."""
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        return (
            {"type": "redacted_thinking", "data": data} if signatures == "anthropic" and isinstance(data, str) else None
        )
    signature, text = block.get("signature"), block.get("thinking")
    if not isinstance(signature, str) or not signature or not isinstance(text, str):
        return None
    if signatures is None or (signatures == "gemini") != is_gemini(signature):
        return None  # no target verifies it, or another provider signed it
    return {"type": "thinking", "thinking": text, "signature": signature}


def _assistant(content: Any, where: str, drops: Drops, marks: CacheMarks, signatures: str | None = None) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    markers: dict[int, JSON] = {}  # a marked text block's index in `texts`, and its marker
    calls: list[JSON] = []
    thinking: list[JSON] = []
    for j, block in enumerate(_blocks(content, where)):
        at = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            if block.get("citations"):
                drops.add("citations")
            marker = marks.mark(block, at) if "cache_control" in block else None
            if marker is not None:
                markers[len(texts)] = marker
            texts.append(_text(block, at))
        elif kind == "tool_use":
            call = _tool_call(block, at)
            marker = marks.mark(block, at) if "cache_control" in block else None
            if marker is not None:
                call["cache_control"] = marker
            calls.append(call)
        elif kind in _THINKING:
            if "cache_control" in block:  # Anthropic caches thinking only as part of the turn, never marked itself
                drops.add("cache_control")
            carried = _carried(block, signatures)
            if carried is None:
                drops.add("thinking_blocks")
            else:
                thinking.append(carried)
        elif kind in SERVER_BLOCKS:
            raise UnsupportedParameter(f"{at} ({kind!r} block of a server tool)")
        else:
            raise UnsupportedParameter(f"{at} ({kind!r} block in an assistant turn)")
    text: str | list[JSON] | None = "".join(texts) if texts or not calls else None
    if markers:
        text = [_text_part(t, markers.get(i)) for i, t in enumerate(texts)]
    message: JSON = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _text_part(text: str, marker: JSON | None) -> JSON:
    part: JSON = {"type": "text", "text": text}
    if marker is not None:
        part["cache_control"] = marker
    return part


def _tool_call(block: Mapping[str, Any], where: str) -> JSON:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise _invalid(where, "tool_use blocks need a string id and name")
    if not isinstance(arguments, dict):
        raise _invalid(f"{where}.input", "must be an object")
    encoded = orjson.dumps(arguments).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}


def chat_messages(
    messages: Any, drops: Drops, signatures: str | None = None, marks: CacheMarks | None = None
) -> list[JSON]:
    """The Chat Completions messages of a Messages conversation (without the system prompt).

    `signatures` names whose thinking signatures the target verifies (`llm.signatures`): `anthropic` (Claude on
    Bedrock) or `gemini`. The assistant turns' thinking blocks signed by it (and, for `anthropic`, the
    `redacted_thinking` blocks) go in the message's `thinking_blocks`, in order, for the provider to give back;
    every other thinking block is dropped (`thinking_blocks`). `marks` carries (or drops) the cache markers
    (`llm.messages.cache`); without it they are dropped.

    Raises:
        InvalidRequest: a turn or block is malformed (the message names where).
        UnsupportedParameter: a block cannot be translated (server tools, files by id, documents by URL).
    """
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "must be a non-empty list")
    marks = marks or CacheMarks(drops, carried=False)
    out: list[JSON] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(where, "must be an object")
        role = message.get("role")
        if role == "user":
            out += _user(message.get("content"), where, drops, marks)
        elif role == "assistant":
            out.append(_assistant(message.get("content"), where, drops, marks, signatures))
        elif role == "system":
            out.append({"role": "system", "content": _system_turn(message.get("content"), where, marks)})
        else:
            raise _invalid(f"{where}.role", "must be 'user', 'assistant' or 'system'")
    return out

"""Small translation helpers shared by the non-OpenAI providers."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from llm.errors import UnsupportedParameter
from llm.schema import JSON, text_of

__all__ = ["arguments_of", "call_id", "data_url", "dumps_str", "merge_roles", "system_text"]


def data_url(url: str) -> tuple[str, str] | None:
    """Split `data:<mime>;base64,<data>` into (mime, base64 data); None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    if not sep or encoding != "base64":
        return None
    return mime or "application/octet-stream", data


def arguments_of(raw: Any) -> JSON:
    """Tool-call arguments (a JSON string in OpenAI's schema) as an object; invalid JSON becomes `{}`."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def dumps_str(value: Any) -> str:
    """Compact JSON text."""
    return orjson.dumps(value).decode()


def call_id() -> str:
    """A fresh tool-call id for providers that do not assign one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def system_text(messages: list[JSON]) -> tuple[str, list[JSON]]:
    """Split system/developer messages (joined text) from the rest of the conversation."""
    system: list[str] = []
    rest: list[JSON] = []
    for message in messages:
        if message.get("role") in ("system", "developer"):
            system.append(text_of(message.get("content")))
        else:
            rest.append(message)
    return "\n\n".join(s for s in system if s), rest


def merge_roles(messages: list[JSON], content_key: str) -> list[JSON]:
    """Merge consecutive messages of the same role (APIs that require alternating turns)."""
    out: list[JSON] = []
    for message in messages:
        if out and out[-1]["role"] == message["role"]:
            out[-1][content_key].extend(message[content_key])
        else:
            out.append(message)
    return out


def stop_list(stop: Any, provider: str, model: str) -> list[str] | None:
    """OpenAI `stop` (string or list) as a list."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise UnsupportedParameter("stop", provider=provider, model=model)


def max_tokens(request: JSON) -> int | None:
    """`max_completion_tokens`, else `max_tokens`."""
    value = request.get("max_completion_tokens", request.get("max_tokens"))
    return value if isinstance(value, int) else None

"""An estimate of a Messages request's input tokens, for `/v1/messages/count_tokens` on non-Anthropic targets.

Anthropic counts with its own tokenizer, which it does not publish; another provider's count would not match it
either. So the estimate is a documented rule, meant for what clients use the endpoint for (is the context
nearly full? should it be compacted?), not for billing, which always uses the usage the provider reports:

- text (system prompt, text blocks, tool results, tool inputs as JSON, tool definitions as JSON): one token
  per 3.5 characters, rounded up (Claude's tokenizer yields more tokens than OpenAI's ~4 characters per token);
- each image: 1,600 tokens, Anthropic's cost of an image at the largest size it keeps (about 1.15 megapixels;
  tokens = width x height / 750), so the estimate errs high rather than low;
- each PDF page: 2,000 tokens (Anthropic quotes 1,500 to 3,000 per page of text, plus the page as an image);
  the pages are counted from the PDF's page objects, at least one;
- 4 tokens per message for the turn markers, and 300 for the tool-use system prompt when tools are offered;
- thinking blocks of earlier turns count nothing: Anthropic strips them from the context.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["estimate_input_tokens"]

CHARS_PER_TOKEN = 3.5
IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 2000
MESSAGE_TOKENS = 4
TOOLS_PROMPT_TOKENS = 300

_PAGE = re.compile(rb"/Type\s*/Page(?![s\w])")


def _pdf_pages(data: Any) -> int:
    if not isinstance(data, str):
        return 1
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return 1
    return max(1, len(_PAGE.findall(raw)))


class _Tally:
    __slots__ = ("chars", "tokens")

    def __init__(self) -> None:
        self.chars = 0
        self.tokens = 0

    def content(self, content: Any) -> None:
        if isinstance(content, str):
            self.chars += len(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, Mapping):
                    self.block(block)

    def block(self, block: Mapping[str, Any]) -> None:
        kind = block.get("type")
        source = block.get("source")
        if kind == "text":
            self.content(block.get("text"))
        elif kind == "image":
            self.tokens += IMAGE_TOKENS
        elif kind == "document" and isinstance(source, Mapping):
            self.document(block, source)
        elif kind in ("tool_result", "search_result"):
            self.content(block.get("content"))
            self.content(block.get("title"))
        elif kind in ("tool_use", "server_tool_use"):
            self.content(block.get("name"))
            self.chars += len(orjson.dumps(block.get("input", {})))
        elif kind not in ("thinking", "redacted_thinking"):
            self.chars += len(orjson.dumps(block))

    def document(self, block: Mapping[str, Any], source: Mapping[str, Any]) -> None:
        self.content(block.get("title"))
        self.content(block.get("context"))
        if source.get("type") == "text":
            self.content(source.get("data"))
        elif source.get("type") == "content":
            self.content(source.get("content"))
        elif source.get("type") == "base64":
            self.tokens += PDF_PAGE_TOKENS * _pdf_pages(source.get("data"))
        else:
            self.tokens += PDF_PAGE_TOKENS


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """The estimated input tokens of a Messages request body (see the module docstring for the rule)."""
    tally = _Tally()
    tally.content(body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, Mapping):
            tally.tokens += MESSAGE_TOKENS
            tally.content(message.get("content"))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        tally.tokens += TOOLS_PROMPT_TOKENS
        tally.chars += sum(len(orjson.dumps(t)) for t in tools)
    return tally.tokens + math.ceil(tally.chars / CHARS_PER_TOKEN)

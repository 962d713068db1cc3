"""The documented estimate behind `count_tokens` for non-Anthropic targets."""

from __future__ import annotations

import base64
import math

import orjson

from llm.messages import estimate_input_tokens
from llm.messages.tokens import CHARS_PER_TOKEN, IMAGE_TOKENS, MESSAGE_TOKENS, PDF_PAGE_TOKENS, TOOLS_PROMPT_TOKENS

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}


def _text_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def test_text_counts_by_characters_plus_a_marker_per_message() -> None:
    body = {"model": "m", "system": "You are a scientist.", "messages": [{"role": "user", "content": "Hello, Claude"}]}
    assert estimate_input_tokens(body) == MESSAGE_TOKENS + _text_tokens(
        len("You are a scientist.") + len("Hello, Claude")
    )


def test_tools_add_their_definitions_and_the_tool_prompt() -> None:
    plain = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    with_tools = {**plain, "tools": [TOOL]}
    chars = 2 + len(orjson.dumps(TOOL))
    assert estimate_input_tokens(with_tools) == MESSAGE_TOKENS + TOOLS_PROMPT_TOKENS + _text_tokens(chars)
    assert estimate_input_tokens(with_tools) > estimate_input_tokens(plain)


def test_images_pdf_pages_tool_turns_count_and_earlier_thinking_does_not() -> None:
    two_pages = (
        b"%PDF-1.4\n1 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] >>\n2 0 obj << /Type /Page >>\n3 0 obj <</Type/Page>>"
    )
    pdf = {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(two_pages).decode()}
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [image, {"type": "document", "source": pdf}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "x" * 1000, "signature": "s" * 500},
                    {"type": "tool_use", "id": "t", "name": "get_weather", "input": {"c": "P"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [image]}]},
        ],
    }
    chars = len("get_weather") + len(b'{"c":"P"}')
    expected = 3 * MESSAGE_TOKENS + 2 * IMAGE_TOKENS + 2 * PDF_PAGE_TOKENS + _text_tokens(chars)
    assert estimate_input_tokens(body) == expected


def test_text_documents_and_other_blocks_count_their_text_and_an_unreadable_pdf_counts_one_page() -> None:
    search = {"type": "search_result", "source": "s", "title": "T", "content": [{"type": "text", "text": "abc"}]}
    blocks = [
        {"type": "text", "text": "12345"},
        {"type": "document", "title": "Doc", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "xy"}]}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "@@not base64@@"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": 7}},
        search,
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": blocks}, "not a message"]}
    chars = len("12345") + len("Doc") + len("hello") + len("xy") + len("abc") + len("T")
    assert estimate_input_tokens(body) == MESSAGE_TOKENS + 3 * PDF_PAGE_TOKENS + _text_tokens(chars)
    other = {"type": "container_upload", "file_id": "f"}
    assert estimate_input_tokens({"messages": [{"role": "user", "content": [other]}]}) == MESSAGE_TOKENS + _text_tokens(
        len(orjson.dumps(other))
    )

"""A lean session finds its response in any well-formed SSE body, as an SSE client reads it.

Upstreams answer a POST with an event stream in many legal spellings: one message split over several `data:`
lines, CRLF line ends, comments, `event:`/`id:`/`retry:` fields, notifications and other events first, and (from
servers that close the stream right after it) a last event without its blank line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, strategies as st

from connectors.errors import UpstreamUnavailable
from http1.sse import EventTooLarge, SSEDecoder, message_data
from tests.connectors.harness import lean_session
from tests.connectors.scripted import Request, rpc_line, serve_upstream, sse_response

pytestmark = pytest.mark.anyio

RESULT: dict[str, Any] = {"content": [{"type": "text", "text": "two\nlines"}], "isError": False}
CALL = {"name": "echo", "arguments": {}}
NOTE = b'{"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}'


def split_over_lines(message: bytes, eol: bytes = b"\n") -> bytes:
    """One JSON message as several `data:` lines (cut at each comma, where JSON allows a line break)."""
    return b"".join(b"data: " + part + eol for part in message.replace(b",", b",\n").split(b"\n"))


BODIES: list[Any] = [
    pytest.param(lambda m: b"data: " + m + b"\n\n", id="one data line"),
    pytest.param(lambda m: b"data:" + m + b"\n\n", id="no space after the colon"),
    pytest.param(lambda m: split_over_lines(m) + b"\n", id="one message over several data lines"),
    pytest.param(lambda m: split_over_lines(m, b"\r\n") + b"\r\n", id="several data lines with CRLF"),
    pytest.param(
        lambda m: b": keep-alive\r\nretry: 1000\r\nid: 7\r\nevent: message\r\ndata: " + m + b"\r\n\r\n",
        id="comments and event, id and retry fields",
    ),
    pytest.param(lambda m: b"id: 0\ndata: \n\ndata: " + m + b"\n\n", id="an empty priming event first"),
    pytest.param(lambda m: b"data: " + NOTE + b"\n\ndata: " + m + b"\n\n", id="a notification first"),
    pytest.param(lambda m: b"event: ping\ndata: alive\n\ndata: " + m + b"\n\n", id="a non-JSON event first"),
    pytest.param(lambda m: b"data: " + m + b"\n", id="no blank line at the end"),
    pytest.param(lambda m: b"data: " + m, id="no line end at the end"),
    pytest.param(lambda m: split_over_lines(m, b"\r\n")[:-2], id="several data lines, the last cut short"),
]


@pytest.mark.parametrize("body", BODIES)
async def test_the_response_is_found_in_any_well_formed_event_stream(body: Callable[[bytes], bytes]) -> None:
    async def answer(request: Request) -> bytes:
        return sse_response(body(rpc_line(request, RESULT)))

    async with serve_upstream() as server, lean_session(server.url) as session:
        server.on["tools/call"] = answer
        assert await session.request("tools/call", CALL, timeout=10) == RESULT


async def test_an_event_stream_with_only_other_events_is_no_response() -> None:
    async def answer(request: Request) -> bytes:
        other = orjson.dumps({"jsonrpc": "2.0", "id": request.message["id"] + 1000, "result": RESULT})
        return sse_response(b"data: " + NOTE + b"\n\ndata: " + other + b"\n\n")

    async with serve_upstream() as server, lean_session(server.url) as session:
        server.on["tools/call"] = answer
        with pytest.raises(UpstreamUnavailable, match="no response"):
            await session.request("tools/call", CALL, timeout=10)


def test_a_whole_body_ends_its_last_event_without_the_closing_blank_line() -> None:
    assert message_data(b"event: message\r\ndata: a\r\ndata: b") == [b"a\nb"]
    assert message_data(b"data: a\rdata: b\r\rdata: c") == [b"a\nb", b"c"], "a lone CR ends a line too"


def test_a_whole_body_yields_only_message_events_with_data() -> None:
    body = b"event: ping\ndata: 1\n\nevent:\ndata: 2\n\nevent: message\ndata:3\n\nid: 4\n\n: note\n\ndata\n\n"
    assert message_data(body) == [b"2", b"3", b""]


LINE = st.one_of(
    st.sampled_from(["", ":", ": note", "id: 1", "retry: 10", "event", "event:", "event: message", "data", "data:"]),
    st.builds(
        lambda field, sep, value: field + sep + value,
        st.sampled_from(["data", "event", "id", "x"]),
        st.sampled_from([":", ": ", ":  "]),
        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF)),
    ),
)


@given(lines=st.lists(LINE, max_size=12), eol=st.sampled_from(["\n", "\r\n"]), cut=st.integers(min_value=1))
def test_a_whole_body_is_read_as_the_streaming_decoder_reads_it(lines: list[str], eol: str, cut: int) -> None:
    body = (eol.join(lines) + eol + eol).encode()
    decoder = SSEDecoder()
    at = cut % len(body)
    events = decoder.feed(body[:at]) + decoder.feed(body[at:])  # fed in two chunks, cut anywhere
    # An event with a name but no `data:` line: the decoder hands it on with empty data, the spec (and
    # `message_data`) drops it; neither carries an answer.
    expected = [e.data.encode() for e in events if e.event == "message" and e.data]
    assert [d for d in message_data(body) if d] == expected
    assert [d for d in message_data(body[: -len(eol)]) if d] == expected, "the same without the closing blank line"


def test_the_decoder_refuses_an_endless_line_with_its_own_error() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: " + b"x" * 200)

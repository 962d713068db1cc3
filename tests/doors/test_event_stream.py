"""The OpenAI door's event-stream response on its own: batching, backpressure, disconnects, failed writes and
cancellation, with a scripted stream and an in-memory client."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import anyio
import pytest
from starlette.types import Message

from hub.doors.openai import EventStreamResponse
from hub.errors import UpstreamFailed
from hub.executors.stream import OutcomeStream

pytestmark = pytest.mark.anyio


class ScriptedStream:
    """`count` chunks of `size` characters, a pause every `pause_every`, optionally a failure at the end."""

    responses = False
    messages = False

    def __init__(self, count: int, *, size: int = 8, pause: float = 0.0, pause_every: int = 1, fail: bool = False):
        self.count, self.size, self.pause, self.pause_every, self.fail = count, size, pause, pause_every, fail
        self.closed = 0

    def __aiter__(self) -> AsyncGenerator[dict[str, Any]]:
        return self._chunks()

    async def _chunks(self) -> AsyncGenerator[dict[str, Any]]:
        for i in range(self.count):
            if i % self.pause_every == 0:
                await anyio.sleep(self.pause)
            yield {"choices": [{"index": 0, "delta": {"content": "x" * self.size}}]}
        if self.fail:
            raise UpstreamFailed("the provider stream failed")

    async def aclose(self) -> None:
        self.closed += 1


class Client:
    """Receives what the response sends; may disconnect after a delay, write slowly or fail its writes."""

    def __init__(self, *, disconnect_after: float | None = None, write_delay: float = 0.0, fail_after: int = -1):
        self.disconnect_after, self.write_delay, self.fail_after = disconnect_after, write_delay, fail_after
        self.messages: list[Message] = []

    async def receive(self) -> Message:
        if self.disconnect_after is None:
            await anyio.sleep_forever()
        await anyio.sleep(self.disconnect_after or 0.0)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if 0 <= self.fail_after <= len(self.messages):
            raise OSError("the client went away")
        if self.write_delay:
            await anyio.sleep(self.write_delay)
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)


async def _serve(stream: ScriptedStream, client: Client) -> None:
    # The scripted stream has the interface the response uses: iteration, `responses` and `aclose`.
    response = EventStreamResponse(cast(OutcomeStream, stream), {"x-agenthub-provider": "openai"}, time.perf_counter())
    await response({"type": "http"}, client.receive, client.send)


async def test_events_ready_together_go_out_in_one_write_and_the_last_ends_the_response() -> None:
    stream, client = ScriptedStream(12, pause_every=4), Client()
    await _serve(stream, client)
    bodies = [m for m in client.messages if m["type"] == "http.response.body"]
    assert client.body.count(b"data: ") == 13 and client.body.endswith(b"data: [DONE]\n\n")
    assert len(bodies) < 12
    assert bodies[-1]["more_body"] is False and all(m["more_body"] for m in bodies[:-1])
    assert stream.closed == 1


async def test_a_slow_reader_gets_everything_in_order() -> None:
    stream, client = ScriptedStream(40, size=5000), Client(write_delay=0.001)
    await _serve(stream, client)
    assert client.body.count(b"data: ") == 41 and client.body.endswith(b"data: [DONE]\n\n")
    assert stream.closed == 1


async def test_an_upstream_failure_ends_the_stream_with_an_error_event() -> None:
    stream, client = ScriptedStream(3, fail=True), Client()
    await _serve(stream, client)
    assert client.body.count(b"data: ") == 4 and b'"error"' in client.body
    assert client.messages[-1]["more_body"] is False
    assert stream.closed == 1


async def test_a_disconnect_stops_the_relay_and_closes_the_stream_once() -> None:
    stream, client = ScriptedStream(1000, pause=0.01), Client(disconnect_after=0.05)
    with anyio.fail_after(5):
        await _serve(stream, client)
    assert client.body.count(b"data: ") < 100
    assert stream.closed == 1


async def test_a_failed_write_stops_the_relay() -> None:
    stream, client = ScriptedStream(1000, pause=0.001), Client(fail_after=3)
    with anyio.fail_after(5):
        await _serve(stream, client)
    assert len(client.messages) == 3
    assert stream.closed == 1


async def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    stream, client = ScriptedStream(1000, pause=0.01), Client()
    with anyio.move_on_after(0.05) as scope:
        await _serve(stream, client)
    assert scope.cancelled_caught
    assert stream.closed == 1

"""A streamed `Outcome`: the value an `llm.*` call returns when the caller asked for a stream.

How a stream flows through the pipeline: the executor returns `Outcome(OutcomeStream(...))` as soon as the
router has the first content. Stages that need to see the output do not wait for it; they hook in:

- `add_text_filter(factory)`: the guardrails stage adds its `StreamScanner` (one per choice / output part / tool
  call, made on first use). Every text delta and every streamed tool-call argument passes through it: held-back
  text is released later, redactions are applied, a block raises `Forbidden` from the iteration and the door ends
  the stream with an error event.
- `on_close(callback)`: the limits stage settles its reservation with the stream's final `usage`. Callbacks run
  exactly once, when the door closes the stream: after the last chunk, on an upstream failure, on a guardrail
  block, or when the client went away (shielded from the cancellation).

An Anthropic Messages stream (`messages=True`) carries items `{"raw", "events"}` (see `llm.messaging`): without
filters each item's bytes go to the client unchanged (its events not even parsed once the provider's usage is
known); with filters, `text_delta` text and `input_json_delta` input pass through them per content block (the
rest a block's filters hold is released before its `content_block_stop`), and an item whose events changed is
sent re-encoded.

Usage is the provider's when it reported any, otherwise an estimate (prompt estimate plus streamed characters
/ 4), flagged by `estimated`, so a cancelled stream is billed for what was sent and never twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio

from hub.errors import Forbidden, HubError, UpstreamFailed, UpstreamOverloaded, UpstreamTimedOut
from hub.executors.pricing import call_usage
from hub.governance.usage import Usage
from hub.guardrails import GuardrailBlockedError
from llm import ProviderError, ProviderHTTPError, ProviderTimeout, ResultStream, Usage as TokenUsage
from llm.messages import encode_event

__all__ = ["AgentStream", "ClosingStream", "OutcomeStream", "TextFilter", "estimate_text_tokens"]

logger = logging.getLogger(__name__)
JSON = dict[str, Any]
CLOSE_TIMEOUT_S = 10.0
OVERLOADED = 529
"""Anthropic's status for `overloaded_error`, passed on as such (`UpstreamOverloaded`)."""


def estimate_text_tokens(chars: int) -> int:
    """A rough token count for `chars` characters of text (4 characters a token)."""
    return math.ceil(chars / 4)


class TextFilter(Protocol):
    """What the guardrails' `StreamScanner` offers: feed text, get what may be sent now; finish for the rest."""

    async def feed(self, chunk: str) -> str: ...

    async def finish(self) -> str: ...


FilterFactory = Callable[[], TextFilter | None]
CloseCallback = Callable[["ClosingStream"], Awaitable[None]]


class ClosingStream:
    """A streamed outcome: the door relays its items and closes it exactly once, however the stream ends; stages
    hook `on_close` (the audit stage records the call then, with how it ended: `failure`, or `finished`)."""

    responses = False
    """Whether items are Responses API events (`event:` lines) rather than chat chunks."""
    messages = False
    """Whether items are Anthropic Messages stream bytes (`{"raw": bytes}`), sent as they are."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        """Final usage (tokens and US dollars), set when the stream is closed."""
        self.failure: HubError | None = None
        """The error that ended the stream, if one did."""
        self.finished = False
        """Whether every item was produced (False: the client went away first)."""
        self._callbacks: list[CloseCallback] = []
        self._closed = False

    def on_close(self, callback: CloseCallback) -> None:
        """Run `callback(self)` once when the stream is closed, after `usage` is final."""
        self._callbacks.append(callback)

    def __aiter__(self) -> AsyncIterator[JSON]:
        raise NotImplementedError

    async def _release(self) -> None:
        """Release what the stream holds (called once, shielded, by `aclose`)."""

    async def aclose(self) -> None:
        """Release the stream and run the close callbacks; idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + CLOSE_TIMEOUT_S
            try:
                await self._release()
            except Exception:
                logger.exception("closing a stream failed")
            for callback in self._callbacks:
                try:
                    await callback(self)
                except Exception:
                    logger.exception("a stream close callback failed")


class AgentStream(ClosingStream):
    """The chunks of a streamed Agent Mode loop (an async generator of chat chunks)."""

    def __init__(self, source: AsyncGenerator[JSON]) -> None:
        super().__init__()
        self._source = source

    def __aiter__(self) -> AsyncIterator[JSON]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[JSON]:
        try:
            async for item in self._source:
                yield item
        except HubError as exc:
            self.failure = exc
            raise
        self.finished = True

    async def _release(self) -> None:
        await self._source.aclose()


class OutcomeStream(ClosingStream):
    """Chunks of a chat stream (`chat.completion.chunk` dicts) or events of a Responses stream (dicts with
    `type`), with the hooks the stages use. Iterate once; always `aclose()` (the door does, in `finally`)."""

    def __init__(
        self, source: ResultStream, *, responses: bool = False, messages: bool = False, prompt_estimate: int = 0
    ) -> None:
        super().__init__()
        self.source = source
        self.hop = source.hop
        self.responses = responses
        self.messages = messages
        self._blocks: dict[Any, str] = {}
        """Messages streams: the delta member of each open content block (`text` or `partial_json`)."""
        self.prompt_estimate = prompt_estimate
        self.cost: float | None = None
        self.estimated = False
        """Whether `usage` is an estimate (the provider reported none)."""
        self._factories: list[FilterFactory] = []
        self._chains: dict[Any, list[TextFilter]] = {}
        self._released: dict[Any, str] = {}
        self._chars = 0
        self._last: JSON = {}
        self._gen: AsyncGenerator[JSON] | None = None
        self.observer: Callable[[JSON], Awaitable[None]] | None = None
        """Awaited with each item as it is sent on (after the filters), before the client gets it: the executor
        records a stored Responses API response when its last event passes."""

    # -- hooks ------------------------------------------------------------------------------------------------

    def add_text_filter(self, factory: FilterFactory) -> None:
        """Pass every text delta through filters made by `factory` (one per choice or output part)."""
        self._factories.append(factory)

    # -- iteration --------------------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[JSON]:
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    async def _iterate(self) -> AsyncGenerator[JSON]:
        handle = self._message_item if self.messages else self._event if self.responses else self._chunk
        observe = self.observer
        try:
            async for item in self.source:
                for out in await handle(item):
                    if observe is not None:
                        await observe(out)
                    yield out
            if self._chains:
                for out in await self._flush():
                    yield out
        except ProviderError as exc:
            self.failure = _stream_error(exc)
            raise self.failure from None
        except GuardrailBlockedError as exc:
            self.failure = Forbidden(exc.verdict.message)
            raise self.failure from None
        self.finished = True

    async def _chunk(self, chunk: JSON) -> list[JSON]:
        self._last = chunk
        choices = chunk.get("choices")
        if not choices:
            return [chunk]
        for choice in choices:
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
                if isinstance(text, str) and text:
                    self._chars += len(text)
                    if self._factories:
                        delta["content"] = await self._feed(index, text)
                if self._factories and isinstance(delta.get("tool_calls"), list):
                    await self._tool_arguments(index, delta["tool_calls"])
            if self._factories and choice.get("finish_reason") is not None:
                await self._finish_choice(choice, index)
        return [chunk]

    async def _tool_arguments(self, index: Any, parts: list[Any]) -> None:
        """Pass the streamed arguments of each tool call through the filters (one chain per tool call)."""
        for part in parts:
            function = part.get("function") if isinstance(part, dict) else None
            if not isinstance(function, dict):
                continue
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                function["arguments"] = await self._feed((index, "tool", part.get("index", 0)), arguments)

    async def _finish_choice(self, choice: JSON, index: Any) -> None:
        """Release what the filters of a finished choice still hold: its text, then its tool calls' arguments."""
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice["delta"] = {}
        tail = await self._finish(index)
        if tail:
            delta["content"] = (delta.get("content") or "") + tail
        for where in [w for w in self._chains if isinstance(w, tuple) and w[0] == index]:
            rest = await self._finish(where)
            if rest:
                calls = delta.setdefault("tool_calls", [])
                calls.append({"index": where[2], "function": {"arguments": rest}})

    async def _message_item(self, item: JSON) -> list[JSON]:
        """An Anthropic Messages stream item: counted, and filtered when filters are set (see the module docstring)."""
        if not self._factories:
            if self.source.usage is None:  # the text counts only for an estimate, never needed once usage is known
                for event in item["events"]:
                    delta = event.get("delta") if event.get("type") == "content_block_delta" else None
                    text = delta.get("text") if isinstance(delta, dict) else None
                    self._chars += len(text) if isinstance(text, str) else 0
            return [item]
        events: list[JSON] = item["events"]
        out: list[JSON] = []
        changed = False
        for event in events:
            kind = event.get("type")
            index = event.get("index")
            if kind == "content_block_start":
                block = event.get("content_block")
                kind_of = block.get("type") if isinstance(block, dict) else None
                if kind_of in ("text", "tool_use"):
                    self._blocks[index] = "text" if kind_of == "text" else "partial_json"
            elif kind == "content_block_delta" and index in self._blocks:
                delta = event.get("delta")
                member = self._blocks[index]
                piece = delta.get(member) if isinstance(delta, dict) else None
                if isinstance(delta, dict) and isinstance(piece, str) and piece:
                    self._chars += len(piece) if member == "text" else 0
                    delta[member] = await self._feed(("message", index), piece)
                    changed = True
            elif kind == "content_block_stop" and ("message", index) in self._chains:
                tail = await self._finish(("message", index))
                if tail:
                    out.append(_block_delta(index, self._blocks[index], tail))
                    changed = True
            out.append(event)
        if not changed:
            return [item]
        return [{"raw": b"".join(encode_event(e) for e in out), "events": out}]

    async def _event(self, event: JSON) -> list[JSON]:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            text = event.get("delta")
            if isinstance(text, str) and text:
                self._chars += len(text)
                if self._factories:
                    event["delta"] = await self._feed(_part(event), text)
            return [event]
        if not self._factories:
            return [event]
        out: list[JSON] = []
        if kind in ("response.function_call_arguments.delta", "response.function_call_arguments.done"):
            await self._arguments_event(kind, event, out)
        elif kind == "response.output_text.done":
            tail = await self._finish(_part(event))
            if tail:
                out.append({**event, "type": "response.output_text.delta", "delta": tail})
            event["text"] = self._released.get(_part(event), "")
        else:
            self._rewrite_event(kind, event)
        out.append(event)
        return out

    async def _arguments_event(self, kind: Any, event: JSON, out: list[JSON]) -> None:
        """A function call's streamed arguments: filtered as they come, the rest released before `done`."""
        where = _arguments(event)
        if kind == "response.function_call_arguments.delta":
            text = event.get("delta")
            if isinstance(text, str) and text:
                event["delta"] = await self._feed(where, text)
            return
        tail = await self._finish(where)
        if tail:
            out.append({**event, "type": "response.function_call_arguments.delta", "delta": tail})
        event["arguments"] = self._released.get(where, "")

    def _rewrite_event(self, kind: Any, event: JSON) -> None:
        """Events that repeat finished text or arguments carry what was released, not what the provider sent."""
        if kind == "response.content_part.done":
            part = event.get("part")
            if isinstance(part, dict) and part.get("type") == "output_text":
                part["text"] = self._released.get(_part(event), "")
        elif kind == "response.output_item.done":
            self._rewrite_item(event.get("item"))
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response")
            if isinstance(response, dict):
                for item in response.get("output") or ():
                    self._rewrite_item(item)

    def _rewrite_item(self, item: Any) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "function_call" and ("args", item.get("id")) in self._released:
            item["arguments"] = self._released[("args", item.get("id"))]
        if not isinstance(item.get("content"), list):
            return
        for index, part in enumerate(item["content"]):
            if isinstance(part, dict) and part.get("type") == "output_text":
                part["text"] = self._released.get((item.get("id"), index), "")

    async def _feed(self, where: Any, text: str) -> str:
        chain = self._chains.get(where)
        if chain is None:
            chain = self._chains[where] = [f for f in (make() for make in self._factories) if f is not None]
        for flt in chain:
            text = await flt.feed(text)
        self._released[where] = self._released.get(where, "") + text
        return text

    async def _finish(self, where: Any) -> str:
        chain = self._chains.pop(where, None)
        out = ""
        for flt in chain or ():
            if out:
                out = await flt.feed(out)
            out += await flt.finish()
        self._released[where] = self._released.get(where, "") + out
        return out

    async def _flush(self) -> list[JSON]:
        """The stream ended without a finish marker: release what the filters still hold."""
        out: list[JSON] = []
        for where in list(self._chains):
            tail = await self._finish(where)
            if not tail:
                continue
            if self.messages:
                event = _block_delta(where[1], self._blocks.get(where[1], "text"), tail)
                out.append({"raw": encode_event(event), "events": [event]})
            elif self.responses:
                first, second = where
                if first == "args":
                    out.append({"type": "response.function_call_arguments.delta", "item_id": second, "delta": tail})
                else:
                    out.append({"type": "response.output_text.delta", "item_id": first, "content_index": second,
                                "output_index": 0, "delta": tail})  # fmt: skip
            elif isinstance(where, tuple):
                base = {k: self._last[k] for k in ("id", "object", "created", "model") if k in self._last}
                call = {"index": where[2], "function": {"arguments": tail}}
                out.append(
                    {**base, "choices": [{"index": where[0], "delta": {"tool_calls": [call]}, "finish_reason": None}]}
                )
            else:
                base = {k: self._last[k] for k in ("id", "object", "created", "model") if k in self._last}
                out.append({**base, "choices": [{"index": where, "delta": {"content": tail}, "finish_reason": None}]})
        return out

    # -- closing ----------------------------------------------------------------------------------------------

    async def _release(self) -> None:
        """Release the upstream stream and fix the final usage."""
        try:
            if self._gen is not None:
                await self._gen.aclose()
            await self.source.aclose()
        finally:
            self._final_usage()

    def _final_usage(self) -> None:
        tokens = self.source.usage
        cost = self.source.cost
        if tokens is None:
            self.estimated = True
            tokens = TokenUsage(self.prompt_estimate, estimate_text_tokens(self._chars))
            price = self.source.price
            cost = price.cost(tokens) if price is not None else None
        self.cost = cost
        self.usage = call_usage(tokens, cost)


def _block_delta(index: Any, member: str, piece: str) -> JSON:
    """A Messages `content_block_delta` carrying `piece` as text or as tool input."""
    kind = "text_delta" if member == "text" else "input_json_delta"
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, member: piece}}


def _part(event: JSON) -> tuple[Any, Any]:
    return (event.get("item_id"), event.get("content_index", 0))


def _arguments(event: JSON) -> tuple[str, Any]:
    """Where the streamed arguments of one function call (a Responses output item) are filtered."""
    return ("args", event.get("item_id"))


def _stream_error(exc: ProviderError) -> HubError:
    if isinstance(exc, ProviderTimeout):
        return UpstreamTimedOut(f"the provider stalled mid-stream: {exc.reason}")
    if isinstance(exc, ProviderHTTPError) and exc.status == OVERLOADED:
        return UpstreamOverloaded(f"the provider is overloaded: {exc.reason}")
    return UpstreamFailed(f"the provider stream failed: {exc.reason}")

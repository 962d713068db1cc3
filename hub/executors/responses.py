"""Responses API state: stored responses stay where they were made, and conversations survive the deployment.

A deployment that stores a response (`store` on, the default) holds the conversation so far: a request that
continues it (`previous_response_id`) only works there, with the same provider key. The hub records each stored
response it serves (`hub.store.responses`, shared by replicas) and routes:

- a request with `previous_response_id` first to the deployment and provider key that hold it (on the requested
  model's plan, whatever the weights say);
- if that fails (down, cooling down, or not on the plan), to any other deployment of the plan, with the
  conversation rebuilt from the hub's copies of its turns: their input and output items, then the request's own,
  as one `input` without `previous_response_id`. Item ids are dropped (another deployment does not know them)
  and so are reasoning items without `encrypted_content` (only the deployment that made them can read them).
  Without a copy of every turn, the request fails with 502 rather than continue a conversation with turns missing.

The operations on a stored response (`llm.response.get`, `.delete`, `.cancel`, `.items`) go to the deployment
that holds it; when it is unavailable or no longer has it, a read and an input-item listing are answered from the
hub's copy (`x-agenthub-state: hub`). The authz stage has checked that the response is the caller's own.

`store: false` (Codex) records nothing: the client resends the whole conversation every turn.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from hub.call import Call, Operation, Outcome
from hub.errors import BadRequest, HubError, Internal, UpstreamFailed, unknown
from hub.executors.stream import OutcomeStream
from hub.store.responses import ResponseRecord, ResponseStore
from llm import Hop, HopFilter, NoDeploymentAvailable, ProviderError, ProviderHTTPError, Result, ResultStream

if TYPE_CHECKING:
    from llm.providers.base import StoredAction  # the providers load with the router, not with the hub
    from llm.router import Router

__all__ = ["STORED_OPERATIONS", "StoredResponses", "input_list"]

T = TypeVar("T")
JSON = dict[str, Any]
STORED_OPERATIONS: Mapping[Operation, StoredAction] = {
    "llm.response.get": "get",
    "llm.response.delete": "delete",
    "llm.response.cancel": "cancel",
    "llm.response.items": "items",
}
"""The operations on a stored response, and what each asks of the deployment that holds it."""
_LAST_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def input_list(value: Any) -> list[Any]:
    """A request's `input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def _replayable(item: Any) -> Any | None:
    """An item as another deployment can take it: without its id; None for reasoning it cannot read."""
    if not isinstance(item, dict):
        return item
    if item.get("type") == "reasoning" and not item.get("encrypted_content"):
        return None
    return {k: v for k, v in item.items() if k != "id"}


def _listed(response_id: str, index: int, item: Any) -> JSON:
    """An input item as the input-item list shows it: typed, with its content as parts and an id."""
    entry: JSON = dict(item) if isinstance(item, dict) else {"type": "message", "role": "user", "content": item}
    if entry.get("type", "message") == "message" and "role" in entry:
        entry["type"] = "message"
        if isinstance(entry.get("content"), str):
            entry["content"] = [{"type": "input_text", "text": entry["content"]}]
    entry.setdefault("id", f"{response_id}_input_{index}")
    return entry


def _page(items: list[JSON], query: Mapping[str, Any]) -> JSON:
    """One page of the input-item list (`limit`, `order` (default `desc`), `after`), in the service's shape."""
    ordered = items if query.get("order") == "asc" else list(reversed(items))
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    limit = int(query.get("limit", 20))
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }


def _stores(body: Mapping[str, Any]) -> bool:
    return body.get("store") is not False


def _holder(record: ResponseRecord) -> Hop:
    return Hop(record.provider, record.model, record.provider_key)


class StoredResponses:
    """Routes Responses API requests by where their state lives, records what is stored, and serves the
    operations on stored responses."""

    def __init__(self, store: ResponseStore, router: Router) -> None:
        self.store = store
        self.router = router

    # -- creating ------------------------------------------------------------------------------------------------

    async def complete(self, call: Call, allow: HopFilter) -> Result:
        """A non-streaming `/v1/responses` request, recorded before it is returned when the response is stored."""
        result = await self._route(call, allow, lambda body, hops: self.router.responses(body, allow=hops))
        response = result.response
        if _stores(call.payload) and isinstance(response, dict):
            await self._record(call, result.hop, response)
        return result

    async def stream(self, call: Call, allow: HopFilter) -> ResultStream:
        """A streamed `/v1/responses` request (record it with `watch`)."""
        return await self._route(call, allow, lambda body, hops: self.router.stream_responses(body, allow=hops))

    def watch(self, call: Call, stream: OutcomeStream) -> None:
        """Record a streamed response that is stored when its last event passes, before the client gets it."""
        if not _stores(call.payload):
            return
        hop = stream.hop

        async def observe(event: JSON) -> None:
            response = event.get("response")
            if event.get("type") in _LAST_EVENTS and isinstance(response, dict):
                await self._record(call, hop, response)

        stream.observer = observe

    async def _record(self, call: Call, hop: Hop, response: Mapping[str, Any]) -> None:
        response_id = response.get("id")
        if call.principal is None or not isinstance(response_id, str) or not response_id:
            return
        body: Mapping[str, Any] = call.payload
        previous = body.get("previous_response_id")
        record = ResponseRecord(
            response_id,
            call.principal.key.id,
            hop.provider,
            hop.model,
            hop.key,
            previous if isinstance(previous, str) else None,
        )
        await self.store.save(record, input_list(body.get("input")), dict(response))

    async def _route(self, call: Call, allow: HopFilter, run: Callable[[JSON, HopFilter], Awaitable[T]]) -> T:
        """Send to the holder of `previous_response_id` first; elsewhere only with the conversation rebuilt."""
        body: JSON = call.payload
        previous = body.get("previous_response_id")
        if not isinstance(previous, str):
            return await run(body, allow)
        record = await self.store.find(previous)
        if record is None:  # deleted or purged since the authz stage looked
            raise unknown("response", previous)
        holder = _holder(record)

        def at_holder(hop: Hop) -> bool:
            return hop.provider == holder.provider and hop.key == holder.key and allow(hop)

        def elsewhere(hop: Hop) -> bool:
            return not (hop.provider == holder.provider and hop.key == holder.key) and allow(hop)

        try:
            return await run(body, at_holder)
        except NoDeploymentAvailable as exc:
            unavailable = exc
        rebuilt = await self._rebuild(body, previous)
        if rebuilt is None:
            raise UpstreamFailed(
                f"the deployment that holds response {previous[:200]} is unavailable, and the hub has no copy of the "
                "whole conversation to continue it elsewhere"
            ) from None
        try:
            return await run(rebuilt, elsewhere)
        except NoDeploymentAvailable as exc:
            if exc.attempts:
                raise
            raise unavailable from None  # nowhere else to go: the holder's failure is the one to report

    async def _rebuild(self, body: JSON, previous: str) -> JSON | None:
        """The request as plain `input`: every earlier turn's input and output items, then its own."""
        turns = await self.store.chain(previous)
        if turns is None:
            return None
        items: list[Any] = []
        for turn in turns:
            items.extend(turn.input)
            items.extend(turn.response.get("output") or ())
        items.extend(input_list(body.get("input")))
        replayed = [kept for kept in map(_replayable, items) if kept is not None]
        rebuilt = {k: v for k, v in body.items() if k != "previous_response_id"}
        rebuilt["input"] = replayed
        return rebuilt

    # -- the operations on a stored response ---------------------------------------------------------------------

    async def __call__(self, call: Call) -> Outcome:
        action = STORED_OPERATIONS.get(call.operation)
        if action is None:
            raise Internal(f"{call.operation} is not an operation on a stored response")
        response_id = call.target
        record = await self.store.find(response_id)
        if record is None:  # deleted or purged since the authz stage looked
            raise unknown("response", response_id)
        query: Mapping[str, Any] = call.payload if isinstance(call.payload, dict) else {}
        hop = _holder(record)
        headers = {"x-agenthub-provider": hop.provider, "x-agenthub-model": hop.model}
        started = time.perf_counter()
        try:
            value = await self._at_holder(action, record, query)
        except ProviderError as exc:
            failure = exc
        else:
            upstream_ms = (time.perf_counter() - started) * 1000
            headers["x-agenthub-upstream-ms"] = f"{upstream_ms:.3f}"
            await self._after(action, record, value)
            return Outcome(value, headers=headers, upstream_ms=upstream_ms)
        gone = isinstance(failure, ProviderHTTPError) and failure.status == 404
        if action == "delete" and gone:
            await self.store.forget(response_id)
            return Outcome({"id": response_id, "object": "response", "deleted": True}, headers=headers)
        if action in ("get", "items"):
            turn = await self.store.turn(response_id)
            if turn is not None:
                headers["x-agenthub-state"] = "hub"
                if action == "get":
                    return Outcome(turn.response, headers=headers)
                listed = [_listed(response_id, i, item) for i, item in enumerate(turn.input)]
                return Outcome(_page(listed, query), headers=headers)
        if gone:
            raise unknown("response", response_id)
        raise _unavailable(failure, response_id)

    async def _at_holder(self, action: StoredAction, record: ResponseRecord, query: Mapping[str, Any]) -> JSON:
        provider = self.router.providers.get(record.provider)
        if provider is None:
            raise ProviderError("the provider is no longer configured", provider=record.provider, model=record.model)
        sent = {k: str(v) for k, v in query.items() if k in ("limit", "order", "after")}
        return await provider.stored_response(action, record.id, record.model, record.provider_key, sent)

    async def _after(self, action: StoredAction, record: ResponseRecord, value: JSON) -> None:
        """Keep the hub's copy in step: gone after a delete, the latest state after a read or a cancel."""
        if action == "delete":
            await self.store.forget(record.id)
        elif action in ("get", "cancel") and value.get("id") == record.id:
            turn = await self.store.turn(record.id)
            if turn is not None and turn.response.get("status") != value.get("status"):
                await self.store.save(record, turn.input, value)


def _unavailable(failure: ProviderError, response_id: str) -> HubError:
    """The error for an operation the holder refused (a 4xx: 400 for cancelling a response that is not a background
    one) or could not serve."""
    name = response_id[:200]
    if isinstance(failure, ProviderHTTPError) and 400 <= failure.status < 500 and failure.status != 429:
        code = f" ({failure.code})" if failure.code else ""
        return BadRequest(f"the provider refused the request on response {name}: HTTP {failure.status}{code}")
    return UpstreamFailed(f"the deployment that holds response {name} failed: {failure.reason}")

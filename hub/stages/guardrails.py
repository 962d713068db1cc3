"""guardrails: content checks on what goes in (arguments, prompts) and what comes out (results, completions).

A block raises `Forbidden` with the guardrail's message (never the offending text); a redaction passes a
copy of the payload or result on. Streams are checked by the door chunk by chunk with a sliding window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from hub.call import Call, Outcome
from hub.errors import Forbidden
from hub.guardrails import Guardrails, Scope
from hub.llm_stream import OutcomeStream
from hub.pipeline import Handler

CHECKED = frozenset({"mcp.tool", "mcp.prompt", "mcp.resource", "llm.chat", "llm.embed", "code.run"})


class GuardrailsStage:
    def __init__(self, guardrails: Guardrails, server_of: Callable[[Call], str | None]) -> None:
        self._guardrails = guardrails
        self._server_of = server_of

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        if call.operation not in CHECKED or call.principal is None:
            return await call_next(call)
        key = call.principal.key
        door = "llm" if call.operation.startswith("llm.") else "mcp"
        server = self._server_of(call)
        inbound = Scope("input", door, call.operation, key=key.name, team=key.team, server=server)
        verdict = await self._guardrails.check(call.payload, inbound)
        if verdict.blocked:
            raise Forbidden(verdict.message)
        if verdict.redacted:
            call = replace(call, payload=verdict.payload)
        outcome = await call_next(call)
        outbound = Scope("output", door, call.operation, key=key.name, team=key.team, server=server)
        if call.context.get("stream"):
            if isinstance(outcome.value, OutcomeStream):  # scanned chunk by chunk, one scanner per choice
                first = self._guardrails.stream(outbound)
                if first is not None:
                    made = [first]
                    outcome.value.add_text_filter(lambda: made.pop() if made else self._guardrails.stream(outbound))
            return outcome
        verdict = await self._guardrails.check(outcome.value, outbound)
        if verdict.blocked:
            raise Forbidden(verdict.message)
        if verdict.redacted:
            outcome.value = verdict.payload
        return outcome

"""guardrails: content checks on what goes in and what comes out, for every operation that carries content.

Inputs are the call's payload as the door read it: tool and prompt arguments, the URI of a resource read or
subscription, completion arguments, Code Mode programs and reading-tool arguments, LLM request bodies. Outputs are
every result type (tool, prompt, resource, completion and Code Mode results, listings, LLM responses); streams are
checked chunk by chunk with a sliding window, text and tool-call arguments alike. A payload the guardrails cannot
read (not JSON) is blocked: checks fail closed. `mcp.session` requests carry no content and an Agent Mode loop is
checked through its turns and tool runs (each a call of its own).

A block raises `Forbidden` with the guardrail's message (never the offending text); a redaction passes a copy of
the payload or result on; every finding (block, redact, log, or a failed check) is logged with the call id, never
with the value found. The rules in force can change at run time (admin API): each call uses the engine current
when it started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from hub.call import Call, Malformed, Outcome, agent_loop
from hub.errors import Forbidden
from hub.executors.stream import OutcomeStream
from hub.guardrails import Scope, Verdict
from hub.pipeline import Handler

if TYPE_CHECKING:
    from hub.guardrails import Guardrails

UNCHECKED = frozenset({"mcp.session"})
"""Operations with no content in either direction."""
ADDRESSED = frozenset({"mcp.resource", "mcp.subscribe"})
"""Operations whose input is the address of what they act on: a redaction there would change what is read, so a
guardrail that would redact it blocks instead."""
logger = logging.getLogger("hub.guardrails.findings")


def log_findings(call: Call, scope: Scope, verdict: Verdict) -> None:
    """One log record per check that found something (`extra`: call id, direction, decision, findings)."""
    if not verdict.findings:
        return
    findings = [f.as_log() for f in verdict.findings]
    logger.warning(
        "guardrails %s %s %s: %s (%s)",
        scope.direction,
        call.operation,
        call.target[:200],
        verdict.decision,
        ", ".join(sorted({f"{f['guardrail']}/{f['rule']}" for f in findings})),
        extra={
            "call_id": call.call_id,
            "direction": scope.direction,
            "decision": verdict.decision,
            "guardrail_findings": findings,
        },
    )


class GuardrailsStage:
    def __init__(
        self,
        guardrails: Guardrails | Callable[[], Guardrails | None],
        server_of: Callable[[Call], str | None],
        findings: Callable[[Scope, Verdict], None] | None = None,
    ) -> None:
        """`guardrails` is an engine, or a function returning the engine in force (None: nothing to check);
        `findings` is told of every check that found something (the metrics count them by rule)."""
        self._current: Callable[[], Guardrails | None] = guardrails if callable(guardrails) else (lambda: guardrails)
        self._server_of = server_of
        self._findings = findings

    def _found(self, call: Call, scope: Scope, verdict: Verdict) -> None:
        """Log a check's findings and, when there are any, tell `findings` (a rare path: most checks find none)."""
        log_findings(call, scope, verdict)
        if verdict.findings and self._findings is not None:
            self._findings(scope, verdict)

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        guardrails = self._current()
        principal = call.principal
        if guardrails is None or principal is None:
            return await call_next(call)
        if call.operation in UNCHECKED or isinstance(call.payload, Malformed) or agent_loop(call):
            return await call_next(call)
        key = principal.key
        door = "llm" if call.operation.startswith("llm.") else "mcp"
        server = self._server_of(call)
        if call.payload is not None:
            inbound = Scope("input", door, call.operation, key=key.name, team=key.team, server=server)
            verdict = await guardrails.check(call.payload, inbound)
            self._found(call, inbound, verdict)
            if verdict.blocked or (verdict.redacted and call.operation in ADDRESSED):
                raise Forbidden(verdict.message or "Request blocked: a guardrail matched the address it names.")
            if verdict.redacted:
                call = replace(call, payload=verdict.payload)
        outcome = await call_next(call)
        outbound = Scope("output", door, call.operation, key=key.name, team=key.team, server=server)
        if isinstance(outcome.value, OutcomeStream):  # scanned chunk by chunk, one scanner per choice or tool call
            first = guardrails.stream(outbound)
            if first is not None:
                made = [first]
                outcome.value.add_text_filter(lambda: made.pop() if made else guardrails.stream(outbound))
            return outcome
        verdict = await guardrails.check(outcome.value, outbound)
        self._found(call, outbound, verdict)
        if verdict.blocked:
            raise Forbidden(verdict.message)
        if verdict.redacted:
            outcome.value = verdict.payload
        return outcome

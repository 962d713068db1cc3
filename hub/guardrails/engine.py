"""The guardrail set: select the guardrails for a call, run them, and combine one verdict."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import httpx2

from .config import GuardrailConfig
from .guard import Guard, scan_text
from .local import TextScanner, build_scanner
from .payload import UnreadablePayload, iter_strings, replace_strings
from .remote import RemoteResult, build_remote
from .stream import StreamScanner
from .text import Hit
from .verdict import Finding, GuardrailConfigError, GuardrailServiceError, Scope, Verdict

__all__ = ["Guardrails"]

INLINE_LIMIT = 32_768
"""Payloads up to this many characters are scanned on the event loop; larger ones in a thread."""


@dataclass(slots=True)
class _Run:
    """Mutable state of one check: current strings, findings and blocks."""

    payload: Any
    scope: Scope
    texts: dict[str, str]
    changed: set[str] = field(default_factory=lambda: set())
    findings: list[Finding] = field(default_factory=lambda: [])
    blocks: list[tuple[Guard, list[str]]] = field(default_factory=lambda: [])

    def record(self, guard: Guard, pointer: str, hits: Sequence[Hit]) -> None:
        cfg = guard.cfg
        for hit in hits:
            self.findings.append(
                Finding(cfg.name, cfg.kind, hit.rule, cfg.action, pointer, hit.start, hit.end, hit.detail)
            )
        if cfg.action == "redact":
            self.texts[pointer] = guard.redact(self.texts[pointer], hits)
            self.changed.add(pointer)
        elif cfg.action == "block":
            self.blocks.append((guard, [h.rule for h in hits]))

    def remote(self, guard: Guard, pointer: str, result: RemoteResult) -> None:
        cfg = guard.cfg
        if not result.intervened:
            return
        if cfg.action == "redact" and result.replacement is not None:
            action = "redact"
            self.texts[pointer] = result.replacement
            self.changed.add(pointer)
        else:
            action = "log" if cfg.action == "log" else "block"
        for rule in result.rules:
            self.findings.append(Finding(cfg.name, cfg.kind, rule, action, pointer, detail=dict(result.detail)))
        if action == "block":
            self.blocks.append((guard, list(result.rules)))

    def failed(self, guard: Guard, exc: BaseException) -> None:
        cfg = guard.cfg
        reason = exc.reason if isinstance(exc, GuardrailServiceError) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"timed out after {cfg.timeout:g}s"
        outcome = "blocked" if cfg.on_error == "block" else "allowed"
        self.findings.append(
            Finding(cfg.name, cfg.kind, "check_failed", "error", detail={"error": reason, "outcome": outcome})
        )
        if cfg.on_error == "block":
            self.blocks.append((guard, ["check_failed"]))

    def verdict(self) -> Verdict:
        findings = tuple(self.findings)
        if self.blocks:
            names = tuple(dict.fromkeys(g.cfg.name for g, _ in self.blocks))
            rules = tuple(dict.fromkeys(r for _, rs in self.blocks for r in rs))
            by_guard: dict[str, list[str]] = {}
            guards: dict[str, Guard] = {}
            for guard, guard_rules in self.blocks:
                by_guard.setdefault(guard.cfg.name, []).extend(guard_rules)
                guards[guard.cfg.name] = guard
            what = "Request" if self.scope.direction == "input" else "Response"
            reasons = "; ".join(guards[n].block_reason(by_guard[n]) for n in names)
            return Verdict("block", self.payload, findings, names, rules, f"{what} blocked by {reasons}.")
        if self.changed:
            updated = replace_strings(self.payload, {p: self.texts[p] for p in self.changed})
            return Verdict("redact", updated, findings)
        return Verdict("allow", self.payload, findings)


class Guardrails:
    """All configured guardrails, built once at start-up.

    Remote adapters share one long-lived ``httpx2.AsyncClient`` (given, or owned and closed by
    :meth:`aclose`). ``rng`` drives sampling (inject a seeded one in tests).

    Raises:
        GuardrailConfigError: a rule does not compile, a name repeats, or a credential is missing.
    """

    def __init__(
        self,
        configs: Sequence[GuardrailConfig],
        *,
        client: httpx2.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        names = [c.name for c in configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GuardrailConfigError(f"duplicate guardrail name(s): {', '.join(duplicates)}")
        self._owns_client = client is None and any(c.is_remote for c in configs)
        self.client = client or (httpx2.AsyncClient(timeout=30.0) if self._owns_client else None)
        self._rng = rng or random.Random()
        self.guards: tuple[Guard, ...] = tuple(self._build(c) for c in configs)

    def _build(self, cfg: GuardrailConfig) -> Guard:
        if cfg.is_remote:
            assert self.client is not None
            return Guard(cfg, remote=build_remote(cfg, self.client))
        return Guard(cfg, scanner=build_scanner(cfg))

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client and self.client is not None:
            await self.client.aclose()

    def select(self, scope: Scope) -> list[Guard]:
        """The guardrails that apply to ``scope``, after sampling."""
        return [
            g for g in self.guards if g.applies(scope) and (g.cfg.sampling >= 1 or self._rng.random() < g.cfg.sampling)
        ]

    async def check(self, payload: Any, scope: Scope) -> Verdict:
        """Check a text, or every string of a JSON payload, for one call.

        Local engines run first, in configuration order, each on the output of the previous
        redactions; remote services then see the already-redacted text (block/log services in
        parallel, redacting ones one after another). Never raises for a failed check: the
        guardrail's ``on_error`` turns it into a block or an allow, recorded as a finding.
        """
        guards = self.select(scope)
        if not guards:
            return Verdict("allow", payload)
        try:
            strings = dict(iter_strings(payload))
        except UnreadablePayload as exc:
            return _unreadable(payload, scope, guards, exc)
        if not strings:
            return Verdict("allow", payload)
        run = _Run(payload, scope, strings)
        for guard in guards:
            if guard.scanner is not None:
                await self._run_local(guard, run)
        remote = [g for g in guards if g.remote is not None]
        parallel = [g for g in remote if g.cfg.action != "redact"]
        if parallel:
            async with anyio.create_task_group() as tg:
                for guard in parallel:
                    tg.start_soon(self._run_remote, guard, run)
        for guard in remote:
            if guard.cfg.action == "redact":
                await self._run_remote(guard, run)
        return run.verdict()

    async def _run_local(self, guard: Guard, run: _Run) -> None:
        scanner = guard.scanner
        assert scanner is not None
        texts = dict(run.texts)
        work = partial(_scan_all, scanner, texts)
        try:
            with anyio.fail_after(guard.cfg.timeout):
                if sum(len(t) for t in texts.values()) > INLINE_LIMIT:
                    results = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
                else:
                    results = work()
        except Exception as exc:  # fail open or closed, never crash the call
            run.failed(guard, exc)
            return
        for pointer, hits in results.items():
            run.record(guard, pointer, hits)

    async def _run_remote(self, guard: Guard, run: _Run) -> None:
        remote = guard.remote
        assert remote is not None
        try:
            with anyio.fail_after(guard.cfg.timeout):
                if guard.cfg.action == "redact" and len(run.texts) > 1:
                    for pointer in list(run.texts):
                        run.remote(guard, pointer, await remote.evaluate(run.texts[pointer], run.scope))
                else:
                    pointer = next(iter(run.texts)) if len(run.texts) == 1 else ""
                    result = await remote.evaluate("\n".join(run.texts.values()), run.scope)
                    run.remote(guard, pointer, result)
        except Exception as exc:  # fail open or closed, never crash the call
            run.failed(guard, exc)

    def stream(self, scope: Scope) -> StreamScanner | None:
        """A scanner for an output stream of ``scope``, or ``None`` when no guardrail applies."""
        guards = self.select(scope)
        return StreamScanner(guards, scope) if guards else None


def _unreadable(payload: Any, scope: Scope, guards: Sequence[Guard], exc: UnreadablePayload) -> Verdict:
    """A payload the guardrails cannot read is blocked (fail closed), whatever each guardrail's `on_error`."""
    findings = tuple(
        Finding(g.cfg.name, g.cfg.kind, "unreadable", "error", detail={"error": str(exc), "outcome": "blocked"})
        for g in guards
    )
    what = "Request" if scope.direction == "input" else "Response"
    names = tuple(g.cfg.name for g in guards)
    return Verdict(
        "block", payload, findings, names, ("unreadable",), f"{what} blocked: the guardrails cannot read it."
    )


def _scan_all(scanner: TextScanner, texts: dict[str, str]) -> dict[str, list[Hit]]:
    results: dict[str, list[Hit]] = {}
    for pointer, text in texts.items():
        hits = scan_text(scanner, text)
        if hits:
            results[pointer] = hits
    return results

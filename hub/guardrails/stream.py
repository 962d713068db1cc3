"""Output streams scanned as they flow, through a sliding window.

The scanner holds back the last ``stream_window`` characters (the largest window among its
``block``/``redact`` guardrails) and rescans them, together with as much already-sent context,
whenever a chunk arrives. A value split across chunks is therefore seen whole before any of it
leaves, provided it fits in the window; a value that already matches is held until it ends. A value
longer than the window (a PEM private key with a 32-character window) can only match once its end
arrives: part of it may have been sent by then, so a ``block`` still stops the stream but a
``redact`` covers only the part still held. Size ``stream_window`` for the longest value that must
never leave (private keys: about 4,000). A ``block`` raises
:class:`GuardrailBlockedError` (the door turns it into an error event); a ``redact`` replaces the
value in the text released. Remote services see the whole text once the stream ends: they can
block the end of the stream (or log), not redact what was already sent.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from .guard import Guard, scan_text
from .text import Hit
from .verdict import Finding, GuardrailBlockedError, GuardrailServiceError, Scope, Verdict

__all__ = ["StreamScanner"]

CONTEXT_MIN = 4096
"""Already-sent characters rescanned with the held tail, so a long value is still recognised."""


class StreamScanner:
    """Scan one output stream: ``await feed(chunk)`` returns what may be sent now, ``await finish()``
    the rest. Both raise :class:`GuardrailBlockedError` when a ``block`` guardrail fires."""

    def __init__(self, guards: Sequence[Guard], scope: Scope) -> None:
        self.scope = scope
        self.local = [g for g in guards if g.scanner is not None]
        self.remote = [g for g in guards if g.remote is not None]
        active = [g.cfg.stream_window for g in self.local if g.cfg.action != "log"]
        self.hold = max(active, default=0)
        widest = max((g.cfg.stream_window for g in self.local), default=0)
        self.context = max(4 * widest, CONTEXT_MIN) if widest else 0
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str, int, int]] = set()
        self._sent_tail = ""  # original text already released, kept for context
        self._held = ""  # original text not yet released
        self._base = 0  # absolute offset of _held in the stream
        self._whole: list[str] | None = [] if self.remote else None

    async def feed(self, chunk: str) -> str:
        """Add a chunk; return the (possibly redacted) text that can be sent now."""
        if self._whole is not None:
            self._whole.append(chunk)
        self._held += chunk
        if len(self._held) <= self.hold:
            return ""
        return self._release(len(self._held) - self.hold)

    async def finish(self) -> str:
        """End of stream: scan and release everything held, then run remote services."""
        out = self._release(len(self._held), final=True)
        if self._whole is not None and self.remote:
            await self._remote_checks("".join(self._whole))
        return out

    def _release(self, upto: int, *, final: bool = False) -> str:
        window = self._sent_tail + self._held
        offset = len(self._sent_tail)
        blocks: list[tuple[Guard, list[str]]] = []
        redactions: list[tuple[Guard, Hit]] = []
        pending: list[tuple[Guard, Hit]] = []
        for guard in self.local:
            assert guard.scanner is not None
            for hit in scan_text(guard.scanner, window):
                if hit.end <= offset:
                    continue  # wholly inside text already handled
                start, end = max(hit.start, offset) - offset, hit.end - offset
                if guard.cfg.action == "block":
                    self._note(guard, hit, start, end)
                    blocks.append((guard, [hit.rule]))
                else:
                    pending.append((guard, Hit(hit.rule, hit.label, start, end, hit.detail)))
        if blocks:
            raise GuardrailBlockedError(self._blocked(blocks))
        if not final:
            moved = True
            while moved:  # never cut through a value: hold it until it has ended
                moved = False
                for _guard, hit in pending:
                    if hit.start < upto < hit.end:
                        upto, moved = hit.start, True
        for guard, hit in pending:
            if hit.end <= upto:
                self._note(guard, hit, hit.start, hit.end)
                if guard.cfg.action == "redact":
                    redactions.append((guard, hit))
        released = self._held[:upto]
        out = _apply(released, redactions)
        self._sent_tail = (self._sent_tail + released)[-self.context :] if self.context else ""
        self._held = self._held[upto:]
        self._base += upto
        return out

    def _note(self, guard: Guard, hit: Hit, start: int, end: int) -> None:
        key = (guard.cfg.name, hit.rule, self._base + start, self._base + end)
        if key in self._seen:
            return
        self._seen.add(key)
        cfg = guard.cfg
        self.findings.append(Finding(cfg.name, cfg.kind, hit.rule, cfg.action, "", key[2], key[3], hit.detail))

    def _blocked(self, blocks: list[tuple[Guard, list[str]]]) -> Verdict:
        names = tuple(dict.fromkeys(g.cfg.name for g, _ in blocks))
        rules = tuple(dict.fromkeys(r for _, rs in blocks for r in rs))
        guards = {g.cfg.name: g for g, _ in blocks}
        reasons = "; ".join(
            guards[n].block_reason([r for g, rs in blocks if g.cfg.name == n for r in rs]) for n in names
        )
        return Verdict("block", None, tuple(self.findings), names, rules, f"Response blocked by {reasons}.")

    async def _remote_checks(self, text: str) -> None:
        blocks: list[tuple[Guard, list[str]]] = []

        async def run(guard: Guard) -> None:
            assert guard.remote is not None
            cfg = guard.cfg
            try:
                with anyio.fail_after(cfg.timeout):
                    result = await guard.remote.evaluate(text, self.scope)
            except Exception as exc:  # fail open or closed, never crash the stream
                reason = exc.reason if isinstance(exc, GuardrailServiceError) else type(exc).__name__
                outcome = "blocked" if cfg.on_error == "block" else "allowed"
                self.findings.append(
                    Finding(cfg.name, cfg.kind, "check_failed", "error", detail={"error": reason, "outcome": outcome})
                )
                if cfg.on_error == "block":
                    blocks.append((guard, ["check_failed"]))
                return
            if result.intervened:
                action = "log" if cfg.action == "log" else "block"
                self.findings.extend(
                    Finding(cfg.name, cfg.kind, r, action, detail=dict(result.detail)) for r in result.rules
                )
                if action == "block":
                    blocks.append((guard, list(result.rules)))

        async with anyio.create_task_group() as tg:
            for guard in self.remote:
                tg.start_soon(run, guard)
        if blocks:
            raise GuardrailBlockedError(self._blocked(blocks))


def _apply(text: str, redactions: list[tuple[Guard, Hit]]) -> str:
    """Apply redactions from several guardrails at once (right to left, overlaps merged)."""
    merged: list[tuple[int, int, Guard, Hit]] = []
    for guard, hit in sorted(redactions, key=lambda r: (r[1].start, -r[1].end)):
        if merged and hit.start < merged[-1][1]:
            start, end, first, first_hit = merged[-1]
            merged[-1] = (start, max(end, hit.end), first, first_hit)
        else:
            merged.append((hit.start, hit.end, guard, hit))
    for start, end, guard, hit in reversed(merged):
        piece = guard.redact(text[start:end], [Hit(hit.rule, hit.label, 0, end - start)])
        text = text[:start] + piece + text[end:]
    return text

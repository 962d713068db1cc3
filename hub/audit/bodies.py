"""Request and response bodies in the request log (`[hub] log_bodies`): captured by reference, stored redacted.

The audit stage only keeps references to a call's payload and result (`Bodies`) on its log entry, and only when
the setting asks for them (`all`, or `errors` for a call that did not end `ok`); everything costly happens in the
request log's flush thread, off the event loop: turning the values into JSON, redacting them and cutting them to
`log_body_max_bytes`. Redaction is the one the guardrails and the audit log already use: values under keys that
look sensitive and every secret the gitleaks rules find (`hub.audit.scrub`), personal data the PII engine finds,
and whatever the operator's local guardrails (secrets, PII, regex rules) match, each replaced by a placeholder.
A streamed response is not kept (its chunks went to the client as they came); its request is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from hub.audit.scrub import JSONValue, Scrubber

BodyMode = Literal["none", "errors", "all"]

NO_BODY: Any = object()
"""The response was not kept: streamed, or the call failed before one existed."""

TextRedactor = Callable[[str], str]
"""Text in, the same text with what must not be stored replaced."""


@dataclass(slots=True)
class Bodies:
    """What one call carried, by reference (serialised later, in the flush thread)."""

    request: Any
    response: Any = NO_BODY


@dataclass(frozen=True, slots=True)
class BodyRow:
    """One `request_log_bodies` row, ready to insert."""

    call_id: str
    ts: datetime
    request: str | None
    response: str | None
    truncated: bool


CUT_MARK = "…[cut]"
"""Ends a stored body that was longer than the cap."""


def _default(value: Any) -> Any:
    """JSON for what `orjson` does not know: pydantic models as their JSON form, bytes by their size, the rest by
    type name (never a `repr` that could carry data the redaction does not see)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    error = getattr(value, "error", None)  # a payload the door could not read (`Malformed`)
    if error is not None and hasattr(error, "message"):
        return {"unreadable": str(error.message)}
    return f"<{type(value).__name__}>"


def to_json_value(value: Any) -> JSONValue:
    """`value` as plain JSON data (dicts, lists, strings, numbers)."""
    loaded: JSONValue = orjson.loads(orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS))
    return loaded


def _redact_strings(value: JSONValue, redact: TextRedactor) -> JSONValue:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_strings(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_strings(v, redact) for v in value]
    return value


def cap(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` UTF-8 bytes (the cut marked with `CUT_MARK`, never inside a character),
    and whether it was cut."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text, False
    room = max(0, max_bytes - len(CUT_MARK.encode()))
    return raw[:room].decode(errors="ignore") + CUT_MARK, True


class BodyRecorder:
    """Turns captured bodies into stored rows: JSON, redacted, capped. Runs in the flush thread.

    Args:
        max_bytes: the most bytes each stored body keeps.
        redactors: text redactors run on every string after the key and secret scrubbing (the PII engine, the
            operator's local guardrails); called for each flush, so rules changed at run time apply at once.
    """

    def __init__(self, max_bytes: int, redactors: Callable[[], Sequence[TextRedactor]] = tuple) -> None:
        self.max_bytes = max_bytes
        self._redactors = redactors
        self._scrubber = Scrubber(safe_keys=("max_tokens", "max_completion_tokens", "max_output_tokens"))

    def text(self, value: Any, redactors: Sequence[TextRedactor]) -> tuple[str | None, bool]:
        """The stored form of one body (None when there is none) and whether it was cut."""
        if value is NO_BODY or value is None:
            return None, False
        data = self._scrubber.scrub(to_json_value(value))
        for redact in redactors:
            data = _redact_strings(data, redact)
        return cap(orjson.dumps(data).decode(), self.max_bytes)

    def rows(self, items: Sequence[tuple[str, datetime, Bodies]]) -> list[BodyRow]:
        """One row per `(call_id, ts, bodies)`."""
        redactors = tuple(self._redactors())
        out: list[BodyRow] = []
        for call_id, ts, bodies in items:
            request, cut_in = self.text(bodies.request, redactors)
            response, cut_out = self.text(bodies.response, redactors)
            out.append(BodyRow(call_id, ts, request, response, cut_in or cut_out))
        return out


def scanner_redactor(scanner: Any) -> TextRedactor:
    """A redactor from a guardrail engine (`TextScanner`): every hit replaced by `[REDACTED:<label>]`."""
    from hub.guardrails.guard import scan_text
    from hub.guardrails.text import redact

    def apply(text: str) -> str:
        return redact(text, scan_text(scanner, text)) if text else text

    return apply


def guardrail_redactors(current: Callable[[], Any]) -> Callable[[], list[TextRedactor]]:
    """The redactors bodies pass through: the PII engine (every entity), then each local guardrail in force (the
    `Guardrails` that `current()` returns, or None), whatever its action or scope: what the operator's rules
    match is not stored."""
    from hub.guardrails.pii import PiiScanner

    pii = scanner_redactor(PiiScanner())

    def redactors() -> list[TextRedactor]:
        engine = current()
        guards: Sequence[Any] = engine.guards if engine is not None else ()
        return [pii, *(scanner_redactor(g.scanner) for g in guards if g.scanner is not None)]

    return redactors

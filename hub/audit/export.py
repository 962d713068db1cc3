"""Audit export formats: JSON, JSON Lines and RFC 5424 syslog lines with structured data.

Every format carries the whole entry including `prev_mac` and `mac`, so an export verifies on its own:
JSON and JSONL hold `AuditEntry.to_dict()`; a syslog line carries the key fields as structured data
(`[audit@32473 seq="..." ...]`) and the canonical JSON of the entry as its message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from hub.audit.chain import AuditEntry, canonical_json

__all__ = [
    "AUDIT_FACILITY",
    "DOCUMENTATION_ENTERPRISE_ID",
    "frame_octet_counted",
    "parse_jsonl",
    "severity",
    "to_json",
    "to_jsonl",
    "to_syslog",
]

AUDIT_FACILITY = 13
"""Syslog facility 13: log audit."""

DOCUMENTATION_ENTERPRISE_ID = 32473
"""The IANA private enterprise number reserved for documentation (RFC 5612); configure your own."""

_BOM = "\ufeff"
_SD_FIELDS = ("seq", "actor", "action", "resource_type", "resource_id", "outcome", "source_ip", "key_id", "mac")
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")
_SD_ESCAPE = re.compile(r'(["\\\]])')


def to_json(entries: Iterable[AuditEntry]) -> str:
    """One JSON array of entries."""
    return json.dumps([entry.to_dict() for entry in entries], ensure_ascii=False, indent=2)


def to_jsonl(entries: Iterable[AuditEntry]) -> str:
    """One canonical JSON object per line (each line ends with a newline)."""
    return "".join(canonical_json(entry.to_dict()).decode() + "\n" for entry in entries)


def parse_jsonl(text: str) -> list[AuditEntry]:
    """Entries back from `to_jsonl` output (blank lines ignored).

    Raises:
        ValueError: a line is not an entry.
    """
    return [AuditEntry.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]


def severity(outcome: str) -> int:
    """Syslog severity of an outcome: success is informational (6), denied a warning (4), anything else a
    notice (5)."""
    return {"success": 6, "denied": 4}.get(outcome, 5)


def _sd_value(value: object) -> str:
    return _SD_ESCAPE.sub(r"\\\1", str(value))


def _header_field(value: str | None, limit: int) -> str:
    cleaned = _NOT_PRINTABLE.sub("_", value or "")[:limit]
    return cleaned or "-"


def to_syslog(
    entry: AuditEntry,
    *,
    hostname: str | None = None,
    app_name: str = "agenthub",
    procid: str | None = None,
    enterprise_id: int = DOCUMENTATION_ENTERPRISE_ID,
    facility: int = AUDIT_FACILITY,
) -> str:
    """One RFC 5424 message: `<PRI>1 TIME HOST APP PROCID MSGID [audit@PEN ...] BOM{entry json}`.

    MSGID is the action (printable ASCII, at most 32 characters); header fields are cut to their RFC limits
    and `-` stands for an empty one. Structured-data values escape `"`, `\\` and `]`.
    """
    pri = facility * 8 + severity(entry.outcome)
    data = entry.to_dict()
    params = " ".join(f'{name}="{_sd_value(data[name])}"' for name in _SD_FIELDS if data[name] is not None)
    header = " ".join(
        (
            f"<{pri}>1",
            entry.time,
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(entry.action, 32),
        )
    )
    return f"{header} [audit@{enterprise_id} {params}] {_BOM}{canonical_json(data).decode()}"


def frame_octet_counted(message: str) -> bytes:
    """RFC 6587 octet-counting framing for syslog over TCP: `MSG-LEN SP SYSLOG-MSG`."""
    payload = message.encode()
    return f"{len(payload)} ".encode() + payload

"""A tamper-evident audit chain: every entry carries an HMAC over its fields and the previous entry's MAC.

```
mac_n = HMAC-SHA256(secret[key_id_n], canonical_json(entry_n without mac))   # entry_n includes prev_mac
prev_mac_1 = "0" * 64 (genesis), prev_mac_n = mac_{n-1}
```

`canonical_json` is compact JSON with sorted keys, UTF-8, no NaN. `verify` names the first bad `seq` and why
(modified, deleted, inserted, reordered, unknown key, truncated when the expected head is given). Keys rotate
through a `Keyring` (key id -> secret): new entries use the active id, old entries verify with theirs.
Retention purges a prefix of the chain and leaves a signed `Checkpoint` (seq and mac of the last purged entry)
from which verification of the remaining entries starts.

This module is pure: the hub's store persists entries and checkpoints; appends must be serialised (one
writer, or the store assigns `seq` under a lock) because each entry depends on the one before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.audit.scrub import JSONValue, Scrubber
from hub.governance.clock import Clock, system_clock

__all__ = [
    "GENESIS_MAC",
    "AuditChain",
    "AuditEntry",
    "AuditEvent",
    "Checkpoint",
    "Keyring",
    "VerifyResult",
    "canonical_json",
    "format_time",
    "purge",
    "verify",
]

GENESIS_MAC = "0" * 64


def canonical_json(value: object) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the bytes the MACs are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def format_time(instant: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. `2026-01-01T00:00:00.000000Z`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=round(instant * 1_000_000))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Keyring:
    """HMAC secrets by key id; `active` signs new entries, every id verifies.

    Raises:
        ValueError: a secret shorter than 32 bytes, or `active` not in `keys`.
    """

    def __init__(self, keys: Mapping[str, bytes | str], active: str) -> None:
        self._keys = {kid: s.encode() if isinstance(s, str) else bytes(s) for kid, s in keys.items()}
        for kid, secret in self._keys.items():
            if len(secret) < 32:
                raise ValueError(f"audit key {kid!r} must be at least 32 bytes")
        if active not in self._keys:
            raise ValueError(f"active audit key {active!r} is not in the keyring")
        self.active = active

    def secret(self, key_id: str) -> bytes | None:
        """The secret of `key_id`, or None when unknown."""
        return self._keys.get(key_id)

    def mac(self, key_id: str, payload: object) -> str:
        """Hex HMAC-SHA256 of `canonical_json(payload)` under `key_id`.

        Raises:
            KeyError: unknown key id.
        """
        return hmac.new(self._keys[key_id], canonical_json(payload), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, as the caller reports it (before sealing)."""

    actor: str
    action: str
    resource_type: str
    resource_id: str | None = None
    before: JSONValue = None
    after: JSONValue = None
    source_ip: str | None = None
    user_agent: str | None = None
    outcome: str = "success"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A sealed audit record."""

    seq: int
    time: str
    actor: str
    action: str
    resource_type: str
    resource_id: str | None
    before: JSONValue
    after: JSONValue
    source_ip: str | None
    user_agent: str | None
    outcome: str
    key_id: str
    prev_mac: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)

    def signed_fields(self) -> dict[str, Any]:
        """Every field except `mac`: what the MAC covers."""
        data = asdict(self)
        del data["mac"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Rebuild an entry from `to_dict` output (e.g. an export line).

        Raises:
            ValueError: missing or extra fields.
        """
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"audit entry fields differ: {sorted(set(data) ^ names)}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Signed proof of where a purged prefix ended: the seq and mac of the last purged entry."""

    seq: int
    mac: str
    time: str
    key_id: str
    signature: str

    def signed_fields(self) -> dict[str, Any]:
        """What the signature covers."""
        return {"kind": "audit.checkpoint", "seq": self.seq, "mac": self.mac, "time": self.time, "key_id": self.key_id}

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Rebuild a checkpoint from `to_dict` output."""
        return cls(**data)


class AuditChain:
    """Seals events into entries, one after another; keeps the head (last seq and mac) in memory.

    Args:
        keyring: signs with `keyring.active`.
        head: the last entry (or checkpoint) already stored, to continue an existing chain.
        clock: Unix seconds for entry times.
        scrubber: redacts secrets from `before` and `after` (and from the user agent).
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        head: AuditEntry | Checkpoint | None = None,
        clock: Clock = system_clock,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.keyring = keyring
        self._clock = clock
        self._scrubber = scrubber or Scrubber()
        self.seq = 0 if head is None else head.seq
        self.mac = GENESIS_MAC if head is None else head.mac

    def append(self, event: AuditEvent) -> AuditEntry:
        """Seal `event` as the next entry (secrets scrubbed) and advance the head."""
        scrub = self._scrubber.scrub
        user_agent = None if event.user_agent is None else str(scrub(event.user_agent))
        unsigned: dict[str, Any] = {
            "seq": self.seq + 1,
            "time": format_time(self._clock()),
            "actor": event.actor,
            "action": event.action,
            "resource_type": event.resource_type,
            "resource_id": event.resource_id,
            "before": scrub(event.before),
            "after": scrub(event.after),
            "source_ip": event.source_ip,
            "user_agent": user_agent,
            "outcome": event.outcome,
            "key_id": self.keyring.active,
            "prev_mac": self.mac,
        }
        # Round-trip through JSON so the stored values are exactly what the MAC covers (tuples -> lists, ...).
        unsigned = json.loads(canonical_json(unsigned))
        entry = AuditEntry(**unsigned, mac=self.keyring.mac(self.keyring.active, unsigned))
        self.seq, self.mac = entry.seq, entry.mac
        return entry


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict on a run of entries; truthy when intact."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def verify(
    entries: Iterable[AuditEntry],
    keyring: Keyring,
    *,
    checkpoint: Checkpoint | None = None,
    expected_head: tuple[int, str] | None = None,
) -> VerifyResult:
    """Check MACs, sequence and links; report the first bad seq and why.

    Args:
        entries: in stored order, starting at seq 1 or right after `checkpoint`.
        keyring: must hold every key id used.
        checkpoint: where a retention purge left off, if any.
        expected_head: (seq, mac) of the last entry recorded elsewhere, to detect tail truncation.
    """
    expected_seq, expected_prev = 1, GENESIS_MAC
    if checkpoint is not None:
        if not _valid(keyring, checkpoint.key_id, checkpoint.signed_fields(), checkpoint.signature):
            return VerifyResult(False, 0, checkpoint.seq, "checkpoint signature is invalid")
        expected_seq, expected_prev = checkpoint.seq + 1, checkpoint.mac
    checked = 0
    for entry in entries:
        if keyring.secret(entry.key_id) is None:
            return VerifyResult(False, checked, entry.seq, f"unknown key id {entry.key_id!r}")
        if not _valid(keyring, entry.key_id, entry.signed_fields(), entry.mac):
            return VerifyResult(False, checked, entry.seq, "entry was modified or forged (MAC mismatch)")
        if entry.seq > expected_seq:
            gap = f"{expected_seq}" if entry.seq == expected_seq + 1 else f"{expected_seq}..{entry.seq - 1}"
            return VerifyResult(False, checked, expected_seq, f"entry {gap} is missing here (deleted or reordered)")
        if entry.seq < expected_seq:
            return VerifyResult(
                False, checked, entry.seq, f"entry is out of order or repeated (expected seq {expected_seq})"
            )
        if entry.prev_mac != expected_prev:
            return VerifyResult(
                False, checked, entry.seq, "chain is broken: prev_mac does not match the previous entry"
            )
        checked += 1
        expected_seq, expected_prev = entry.seq + 1, entry.mac
    if expected_head is not None and expected_head != (expected_seq - 1, expected_prev):
        head_seq = expected_head[0]
        if head_seq > expected_seq - 1:
            return VerifyResult(False, checked, expected_seq, f"log is truncated: head is seq {head_seq}")
        return VerifyResult(False, checked, head_seq, "log does not match the recorded head")
    return VerifyResult(True, checked)


def _valid(keyring: Keyring, key_id: str, payload: object, mac: str) -> bool:
    if keyring.secret(key_id) is None:
        return False
    return hmac.compare_digest(keyring.mac(key_id, payload), mac)


def purge(
    entries: Sequence[AuditEntry], *, older_than_days: float, keyring: Keyring, clock: Clock = system_clock
) -> tuple[list[AuditEntry], Checkpoint | None]:
    """Retention: drop the leading entries older than the cutoff and sign a checkpoint where they ended.

    Only a prefix is purged (the chain is in time order), so verification of what is kept starts at the
    checkpoint. Returns the kept entries and the new checkpoint (None when nothing was old enough).
    """
    cutoff = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=clock()) - timedelta(days=older_than_days)
    count = 0
    for entry in entries:
        if _parse_time(entry.time) >= cutoff:
            break
        count += 1
    if count == 0:
        return list(entries), None
    last = entries[count - 1]
    unsigned = Checkpoint(last.seq, last.mac, format_time(clock()), keyring.active, "")
    signature = keyring.mac(keyring.active, unsigned.signed_fields())
    checkpoint = Checkpoint(last.seq, last.mac, unsigned.time, keyring.active, signature)
    return list(entries[count:]), checkpoint

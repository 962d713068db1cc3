"""The admin audit log: every admin change (and every refused attempt) sealed into an HMAC chain in the database.

Built on `hub.audit.chain`. Appends are serialised by locking the `audit_head` row (one writer at a
time across processes and replicas), so `seq` has no gaps and each entry links to the one before. A change and
its entry are written in one database transaction (`AuditLog.transact`): when the entry cannot be written, the
change is rolled back with it. The HMAC
key comes from `AGENTHUB_AUDIT_KEY` (at least 32 bytes), else is derived from `AGENTHUB_MASTER_KEY` (HKDF),
else is generated once into the data directory with a warning. Retention purges entries older than
`retention_days` and leaves a signed checkpoint; `AuditShipper` forwards the chain to syslog from a persisted
cursor, with a lease so that only one replica ships.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import anyio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from hub.audit.chain import (
    AuditChain,
    AuditEntry,
    AuditEvent,
    Checkpoint,
    Keyring,
    VerifyResult,
    format_time,
    purge as purge_chain,
    verify,
)
from hub.audit.export import DOCUMENTATION_ENTERPRISE_ID, to_syslog
from hub.audit.forward import (
    AuditForwarder,
    SyslogTransport,
    TcpSyslogTransport,
    UdpSyslogTransport,
)
from hub.audit.scrub import JSONValue
from hub.store.admin_tables import AdminStore, AuditCheckpointRow, AuditEntryRow, AuditHeadRow
from hub.store.changes import record_change

logger = logging.getLogger(__name__)

CURSOR = "audit.syslog"
T = TypeVar("T")


class AuditKeyError(ValueError):
    """The audit HMAC key cannot be used."""


class AuditForwardSection(BaseModel):
    """`[audit.forward]`: ship every entry to a syslog receiver (RFC 5424)."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["tcp", "udp"] = "tcp"
    """`tcp` (RFC 6587 octet counting; preferred) or `udp`."""
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    hostname: str | None = None
    """HOSTNAME field of each message (default: this machine's name)."""
    app_name: str = "agenthub"
    enterprise_id: int = Field(default=DOCUMENTATION_ENTERPRISE_ID, ge=1)
    poll_interval_s: float = Field(default=5.0, gt=0)
    """How often entries written by other processes are looked for."""
    lease_s: float = Field(default=30.0, ge=1)
    """Only the replica holding this lease ships; another takes over when it lapses."""


class AuditSection(BaseModel):
    """`[audit]`: the admin audit log."""

    model_config = ConfigDict(extra="forbid")

    retention_days: float = Field(default=0, ge=0)
    """Entries older than this are purged (with a signed checkpoint); 0 keeps everything."""
    purge_interval_s: float = Field(default=3600, gt=0)
    key_file: str = "audit.key"
    """Where a generated key is kept when neither `AGENTHUB_AUDIT_KEY` nor `AGENTHUB_MASTER_KEY` is set
    (relative to the config file)."""
    forward: AuditForwardSection | None = None


def audit_keyring(section: AuditSection, base_dir: Path) -> Keyring:
    """The HMAC keyring: `AGENTHUB_AUDIT_KEY`, else derived from `AGENTHUB_MASTER_KEY`, else a generated file.

    Raises:
        AuditKeyError: `AGENTHUB_AUDIT_KEY` is shorter than 32 bytes, or the key file is unreadable.
    """
    explicit = os.environ.get("AGENTHUB_AUDIT_KEY")
    master = os.environ.get("AGENTHUB_MASTER_KEY")
    if explicit:
        secret = explicit.encode()
        if len(secret) < 32:
            raise AuditKeyError("AGENTHUB_AUDIT_KEY must be at least 32 bytes")
    elif master:
        secret = HKDF(hashes.SHA256(), 32, salt=None, info=b"agenthub audit hmac v1").derive(master.encode())
    else:
        secret = _key_file(base_dir / section.key_file)
    key_id = "k-" + hashlib.sha256(secret).hexdigest()[:12]
    return Keyring({key_id: secret}, active=key_id)


def _key_file(path: Path) -> bytes:
    try:
        if path.exists():
            return bytes.fromhex(path.read_text(encoding="utf-8").strip())
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
    except (OSError, ValueError) as exc:
        raise AuditKeyError(f"audit key file {path}: {exc}") from None
    logger.warning(
        "neither AGENTHUB_AUDIT_KEY nor AGENTHUB_MASTER_KEY is set: generated an audit HMAC key in %s; "
        "back it up, the audit log cannot be verified without it",
        path,
    )
    return bytes.fromhex(value)


def entry_from_row(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, time=row.time, actor=row.actor, action=row.action, resource_type=row.resource_type,
        resource_id=row.resource_id, before=json.loads(row.before), after=json.loads(row.after),
        source_ip=row.source_ip, user_agent=row.user_agent, outcome=row.outcome, key_id=row.key_id,
        prev_mac=row.prev_mac, mac=row.mac,
    )  # fmt: skip


def _row_from_entry(entry: AuditEntry) -> AuditEntryRow:
    data = entry.to_dict()
    data["before"] = json.dumps(entry.before, sort_keys=True)
    data["after"] = json.dumps(entry.after, sort_keys=True)
    return AuditEntryRow(**data)


def checkpoint_from_row(row: AuditCheckpointRow) -> Checkpoint:
    return Checkpoint(row.seq, row.mac, row.time, row.key_id, row.signature)


@dataclass(frozen=True, slots=True)
class _Head:
    seq: int
    mac: str


PurgeEvent = Callable[[Checkpoint, float], AuditEvent]
"""The audit event of a purge, from its checkpoint and the retention in days."""


def _no_change(_s: Session) -> None:
    return None


class AuditLog:
    """Persisted, serialised appends; verification, retention and reads of the chain.

    Args:
        store: the admin tables.
        keyring: signs new entries and verifies old ones.
        clock: Unix seconds (entry times and retention cutoffs).
    """

    def __init__(self, store: AdminStore, keyring: Keyring, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.keyring = keyring
        self._clock = clock
        self._lock = anyio.Lock()
        self.listeners: list[Callable[[AuditEntry], None]] = []

    def transact_sync(self, write: Callable[[Session], T], event: Callable[[T], AuditEvent]) -> tuple[T, AuditEntry]:
        """Make a change and append its audit entry in ONE database transaction (blocking).

        The transaction first locks the audit head (on SQLite it takes the write lock), then `write(session)`
        makes the change in the session without committing, then the entry for `event(result)` is sealed and
        stored, then both are committed. If anything raises, nothing is committed: neither the change nor the
        entry. Objects `write` returns stay usable after the commit.
        """
        with Session(self.store.engine, expire_on_commit=False) as s:
            head = self.store.lock_head(s)
            result = write(s)
            entry = self._seal(s, head, event(result))
            s.commit()
        return result, entry

    def append_sync(self, event: AuditEvent) -> AuditEntry:
        """Seal and store `event` as the next entry (blocking; holds the head row's lock while it writes)."""
        return self.transact_sync(_no_change, lambda _none: event)[1]

    def _seal(self, s: Session, head: AuditHeadRow, event: AuditEvent) -> AuditEntry:
        """Seal `event` after the locked `head` and add it (and the moved head) to the session."""
        chain = AuditChain(self.keyring, head=_Head(head.seq, head.mac), clock=self._clock)  # pyright: ignore[reportArgumentType]
        entry = chain.append(event)
        s.add(_row_from_entry(entry))
        head.seq, head.mac = entry.seq, entry.mac
        s.add(head)
        return entry

    async def transact(self, write: Callable[[Session], T], event: Callable[[T], AuditEvent]) -> T:
        """`transact_sync` off the event loop, one at a time in this process; then tell the listeners."""
        async with self._lock:
            result, entry = await anyio.to_thread.run_sync(self.transact_sync, write, event)
        self._notify(entry)
        return result

    async def append(self, event: AuditEvent) -> AuditEntry:
        """Seal and store `event` off the event loop, one append at a time in this process; then tell the
        listeners (the syslog shipper)."""
        async with self._lock:
            entry = await anyio.to_thread.run_sync(self.append_sync, event)
        self._notify(entry)
        return entry

    def _notify(self, entry: AuditEntry) -> None:
        for listener in self.listeners:
            listener(entry)

    def entries(self, *, after: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Stored entries with seq greater than `after`, in seq order."""
        return [entry_from_row(r) for r in self.store.audit_rows(after=after, limit=limit)]

    async def entries_after(self, seq: int, limit: int) -> Sequence[AuditEntry]:
        """`AuditSource` for the syslog forwarder."""
        return await anyio.to_thread.run_sync(lambda: self.entries(after=seq, limit=limit))

    def checkpoint(self) -> Checkpoint | None:
        row = self.store.latest_checkpoint()
        return None if row is None else checkpoint_from_row(row)

    def verify(self, entries: Sequence[AuditEntry] | None = None) -> VerifyResult:
        """Verify the stored chain (or `entries`, e.g. an export) from the newest checkpoint to the head."""
        head = self.store.audit_head()
        stored = entries if entries is not None else self.entries()
        expected = (head.seq, head.mac) if entries is None and head.seq else None
        return verify(stored, self.keyring, checkpoint=self.checkpoint(), expected_head=expected)

    def purge_sync(self, retention_days: float, *, event: PurgeEvent | None = None) -> Checkpoint | None:
        """Delete entries older than `retention_days` and store a signed checkpoint where they ended; with
        `event`, the purge's own entry is appended in the same transaction."""
        return self._purge(retention_days, event)[0]

    def _purge(self, retention_days: float, event: PurgeEvent | None) -> tuple[Checkpoint | None, AuditEntry | None]:
        cutoff = format_time(self._clock() - retention_days * 86400)
        with Session(self.store.engine) as s:
            head = self.store.lock_head(s)
            query = select(AuditEntryRow).where(col(AuditEntryRow.time) < cutoff).order_by(col(AuditEntryRow.seq))
            old = [entry_from_row(r) for r in s.exec(query)]
            _kept, checkpoint = purge_chain(
                old, older_than_days=retention_days, keyring=self.keyring, clock=self._clock
            )
            if checkpoint is None:
                s.rollback()
                return None, None
            s.add(AuditCheckpointRow(**checkpoint.to_dict()))
            self.store.delete_audit_through(s, checkpoint.seq)
            record_change(s, "audit")  # in the change log, like every admin change
            entry = None if event is None else self._seal(s, head, event(checkpoint, retention_days))
            s.commit()
        return checkpoint, entry

    async def purge(
        self, retention_days: float, *, actor: str = "system", source_ip: str | None = None,
        user_agent: str | None = None,
    ) -> Checkpoint | None:  # fmt: skip
        """Retention (see `purge_sync`); the purge and its own audit entry are one transaction."""

        def event(checkpoint: Checkpoint, days: float) -> AuditEvent:
            after: JSONValue = {"through_seq": checkpoint.seq, "retention_days": days}
            return AuditEvent(actor, "audit.purge", "audit", None, None, after, source_ip, user_agent)

        async with self._lock:
            checkpoint, entry = await anyio.to_thread.run_sync(self._purge, retention_days, event)
        if entry is not None:
            self._notify(entry)
        return checkpoint

    def head(self) -> AuditHeadRow:
        return self.store.audit_head()


class DbCursor:
    """`CursorStore` in the `cursors` table."""

    def __init__(self, store: AdminStore, name: str = CURSOR) -> None:
        self.store = store
        self.name = name

    async def load(self) -> int:
        return (await anyio.to_thread.run_sync(self.store.cursor, self.name)).seq

    async def save(self, seq: int) -> None:
        await anyio.to_thread.run_sync(self.store.save_cursor, self.name, seq)


def syslog_transport(section: AuditForwardSection) -> SyslogTransport:
    if section.transport == "udp":
        return UdpSyslogTransport(section.host, section.port)
    return TcpSyslogTransport(section.host, section.port)


class AuditShipper:
    """Forwards the chain to syslog while this replica holds the forwarding lease."""

    def __init__(self, log: AuditLog, section: AuditForwardSection) -> None:
        self.log = log
        self.section = section
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        hostname = section.hostname or socket.gethostname()

        def fmt(entry: AuditEntry) -> str:
            return to_syslog(
                entry, hostname=hostname, app_name=section.app_name, procid=str(os.getpid()),
                enterprise_id=section.enterprise_id,
            )  # fmt: skip

        self.forwarder = AuditForwarder(
            log, DbCursor(log.store), syslog_transport(section), format=fmt, poll_interval=section.poll_interval_s
        )
        log.listeners.append(lambda _entry: self.forwarder.notify())

    async def run(self) -> None:
        """Take or renew the lease every third of its length; ship while holding it."""
        lease = self.section.lease_s
        while True:
            held = await anyio.to_thread.run_sync(self.log.store.take_lease, CURSOR, self.owner, time.time(), lease)
            if held:
                with anyio.move_on_after(lease / 3):
                    await self.forwarder.run()
            else:
                await anyio.sleep(lease / 3)

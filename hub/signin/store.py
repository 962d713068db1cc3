"""Sign-in state in the SQL store: clients, logins in flight, codes and tokens (hashed).

Every method is synchronous and runs off the event loop (`anyio.to_thread.run_sync`). One-use steps (redeeming a
code, rotating a refresh token) are single conditional updates, so two replicas racing over the same code or
token cannot both win.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from hub.store.signin_tables import (
    SignInClientRow,
    SignInCodeRow,
    SignInConsentRow,
    SignInPendingRow,
    SignInPersonRow,
    SignInRegistrationRow,
    SignInTokenRow,
)
from hub.store.tables import MetaRow

_TABLES = (
    "signin_clients",
    "signin_registrations",
    "signin_pending",
    "signin_codes",
    "signin_tokens",
    "signin_people",
    "signin_consents",
)
VERSION = "signin_version"
"""The meta value that moves whenever access tokens are issued or revoked: other replicas then follow."""


def token_hash(secret: str) -> str:
    """The stored verifier of a code or token."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SignInStore:
    """The sign-in tables of one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[name] for name in _TABLES])

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- clients ------------------------------------------------------------------------------------------------

    def admit_registration(self, source: str, now: datetime, window_start: datetime, allowance: int) -> bool:
        """Count one registration attempt from `source`; False (nothing counted) once `source` made `allowance`
        attempts since `window_start`. Count and insert hold the table's write lock: replicas racing over one
        database admit `allowance` attempts in all."""
        with Session(self._engine) as s:
            _lock(s, "signin_registrations")
            s.exec(delete(SignInRegistrationRow).where(col(SignInRegistrationRow.at) < window_start))
            query = select(func.count()).select_from(SignInRegistrationRow)
            if int(s.exec(query.where(col(SignInRegistrationRow.source) == source)).one()) >= allowance:
                s.commit()  # the expired attempts stay deleted
                return False
            s.add(SignInRegistrationRow(source=source, at=now))
            s.commit()
            return True

    def add_client(self, row: SignInClientRow, cap: int) -> bool:
        """Store a registration unless `cap` clients are registered already (False). Count and insert hold the
        table's write lock: replicas racing over one database never pass the cap."""
        with Session(self._engine, expire_on_commit=False) as s:
            _lock(s, "signin_clients")
            if int(s.exec(select(func.count()).select_from(SignInClientRow)).one()) >= cap:
                s.rollback()
                return False
            s.add(row)
            s.commit()
            return True

    def client(self, client_id: str) -> SignInClientRow | None:
        with Session(self._engine, expire_on_commit=False) as s:
            return s.get(SignInClientRow, client_id)

    def touch_client(self, client_id: str, now: datetime) -> None:
        with Session(self._engine) as s:
            s.exec(update(SignInClientRow).where(col(SignInClientRow.client_id) == client_id).values(last_used_at=now))
            s.commit()

    def forget_clients(self, unused_since: datetime) -> int:
        """Delete registrations that obtained no token since `unused_since`; how many went."""
        with Session(self._engine) as s:
            result: Any = s.exec(delete(SignInClientRow).where(col(SignInClientRow.last_used_at) < unused_since))
            s.commit()
            return int(result.rowcount or 0)

    # -- logins in flight -----------------------------------------------------------------------------------------

    def add_pending(self, row: SignInPendingRow, now: datetime) -> None:
        """Store a login in flight; logins abandoned before `now` and codes expired by then go."""
        with Session(self._engine, expire_on_commit=False) as s:
            s.exec(delete(SignInPendingRow).where(col(SignInPendingRow.expires_at) < now))
            s.exec(delete(SignInCodeRow).where(col(SignInCodeRow.expires_at) < now))
            s.add(row)
            s.commit()

    def take_pending(self, pending_id: str, now: datetime) -> str | None:
        """The request of a login in flight, removed (a login completes once); None when unknown or expired."""
        with Session(self._engine, expire_on_commit=False) as s:
            row = s.get(SignInPendingRow, pending_id)
            if row is None:
                return None
            result: Any = s.exec(delete(SignInPendingRow).where(col(SignInPendingRow.id) == pending_id))
            s.commit()
            if not result.rowcount or aware(row.expires_at) < now:
                return None
            return row.request

    # -- codes ------------------------------------------------------------------------------------------------------

    def add_code(self, row: SignInCodeRow) -> None:
        with Session(self._engine, expire_on_commit=False) as s:
            s.add(row)
            s.commit()

    def redeem_code(self, code_hash: str) -> tuple[SignInCodeRow | None, bool]:
        """The code's row, marked used, and whether this was its first use. A replay returns the row with False
        (the caller revokes what the first use issued)."""
        with Session(self._engine, expire_on_commit=False) as s:
            row = s.get(SignInCodeRow, code_hash)
            if row is None:
                return None, False
            result: Any = s.exec(
                update(SignInCodeRow)
                .where(col(SignInCodeRow.code_hash) == code_hash, col(SignInCodeRow.used).is_(False))
                .values(used=True)
            )
            s.commit()
            return row, bool(result.rowcount)

    # -- tokens ---------------------------------------------------------------------------------------------------

    def add_tokens(self, rows: Sequence[SignInTokenRow], now: datetime) -> None:
        """Store new tokens; tokens expired by `now` go."""
        with Session(self._engine, expire_on_commit=False) as s:
            s.exec(delete(SignInTokenRow).where(col(SignInTokenRow.expires_at) < now))
            s.add_all(rows)
            _bump(s)
            s.commit()

    def token(self, hashed: str) -> SignInTokenRow | None:
        with Session(self._engine, expire_on_commit=False) as s:
            return s.get(SignInTokenRow, hashed)

    def rotate(self, hashed: str) -> bool:
        """Mark a refresh token used; False when it was used (or revoked) already: a reuse."""
        with Session(self._engine) as s:
            result: Any = s.exec(
                update(SignInTokenRow)
                .where(
                    col(SignInTokenRow.token_hash) == hashed,
                    col(SignInTokenRow.used).is_(False),
                    col(SignInTokenRow.revoked).is_(False),
                )
                .values(used=True)
            )
            s.commit()
            return bool(result.rowcount)

    def revoke(self, *, family: str | None = None, token: str | None = None) -> list[str]:
        """Revoke one token, or a whole family; the hashes of the access tokens that were live."""
        with Session(self._engine) as s:
            where = (
                col(SignInTokenRow.family) == family if family is not None else col(SignInTokenRow.token_hash) == token
            )
            hashes = [r.token_hash for r in s.exec(select(SignInTokenRow).where(where)) if r.kind == "access"]
            s.exec(update(SignInTokenRow).where(where).values(revoked=True))
            _bump(s)
            s.commit()
            return hashes

    def access_tokens(self, now: datetime) -> tuple[list[SignInTokenRow], list[str]]:
        """Access tokens not expired: the live ones, and the hashes of the revoked ones (loaded into memory at
        start, and read again when another replica issued or revoked some)."""
        with Session(self._engine, expire_on_commit=False) as s:
            query = select(SignInTokenRow).where(col(SignInTokenRow.kind) == "access")
            rows = [row for row in s.exec(query) if aware(row.expires_at) > now]
        return [r for r in rows if not r.revoked], [r.token_hash for r in rows if r.revoked]

    # -- people and their consents ---------------------------------------------------------------------------

    def seen(self, s: Session, person_id: str, name: str, person: str, now: datetime) -> bool:
        """Record a sign-in in `s` (not committed: the caller commits it with its audit entry); whether the person
        is new."""
        row = s.get(SignInPersonRow, person_id)
        if row is None:
            s.add(SignInPersonRow(id=person_id, name=name, person=person, first_seen_at=now, last_seen_at=now))
            return True
        row.name, row.person, row.last_seen_at = name, person, now
        s.add(row)
        return False

    def people(self) -> list[SignInPersonRow]:
        with Session(self._engine, expire_on_commit=False) as s:
            return list(s.exec(select(SignInPersonRow).order_by(col(SignInPersonRow.last_seen_at).desc())))

    def person(self, person_id: str) -> SignInPersonRow | None:
        with Session(self._engine, expire_on_commit=False) as s:
            return s.get(SignInPersonRow, person_id)

    def person_tokens(self, person_id: str, now: datetime) -> list[SignInTokenRow]:
        """The person's tokens not expired (revoked ones included)."""
        with Session(self._engine, expire_on_commit=False) as s:
            rows = s.exec(select(SignInTokenRow).where(col(SignInTokenRow.person_id) == person_id))
            return [row for row in rows if aware(row.expires_at) > now]

    def revoke_person(self, s: Session, person_id: str) -> list[str]:
        """Revoke every token of a person and forget their consents, in `s` (the caller commits it with its audit
        entry); the hashes of the access tokens that were live."""
        where = col(SignInTokenRow.person_id) == person_id
        rows = s.exec(select(SignInTokenRow).where(where, col(SignInTokenRow.revoked).is_(False)))
        hashes = [r.token_hash for r in rows if r.kind == "access"]
        s.exec(update(SignInTokenRow).where(where).values(revoked=True))
        s.exec(delete(SignInConsentRow).where(col(SignInConsentRow.person_id) == person_id))
        _bump(s)
        return hashes

    def consent(self, person_id: str, client_id: str) -> str | None:
        """The fingerprint of the reach the person last approved for this client, if any."""
        with Session(self._engine) as s:
            row = s.get(SignInConsentRow, (person_id, client_id))
            return None if row is None else row.grants

    def remember_consent(self, row: SignInConsentRow) -> None:
        with Session(self._engine) as s:
            s.merge(row)
            s.commit()


def _lock(s: Session, table: str) -> None:
    """Take the write lock on `table` for the rest of the transaction in `s` (SQLite locks the whole database)."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        s.exec(text("BEGIN IMMEDIATE"))  # pyright: ignore[reportCallIssue,reportArgumentType]
    elif dialect == "postgresql":
        s.exec(text(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))  # pyright: ignore[reportCallIssue,reportArgumentType]


def _bump(s: Session) -> None:
    s.merge(MetaRow(key=VERSION, value=uuid.uuid4().hex))


def aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def state_key(engine: Engine) -> bytes:
    """The key that signs login-state cookies, shared by every replica of one database (made on first use)."""
    import secrets

    from sqlalchemy.exc import IntegrityError

    name = "sign_in_state_key"
    with Session(engine) as s:
        row = s.get(MetaRow, name)
        if row is not None:
            return bytes.fromhex(row.value)
        s.add(MetaRow(key=name, value=secrets.token_hex(32)))
        try:
            s.commit()
        except IntegrityError:  # another replica made it first
            s.rollback()
    with Session(engine) as s:
        row = s.get(MetaRow, name)
        assert row is not None
        return bytes.fromhex(row.value)

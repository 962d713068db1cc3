"""Console sessions, kept on the server: the browser holds only a random id in an `HttpOnly` cookie.

A session holds the admin credential it was opened with (the admin token typed in, or the OIDC session token the
login issued); every page re-authenticates it with the admin API's own check, so a revoked token or an expired
OIDC session ends the console session too. A session unused for `[console] idle_timeout_minutes` is gone.

Sessions are rows of the hub's database (`console_session`), so every worker and replica knows them: the row is
found by the SHA-256 of the cookie's id (the id itself is never stored), and the credential is sealed with
AES-GCM under a key derived from the audit key (a database dump alone does not give the credentials). The table
has its own metadata: it is created with the console's first use, and a hub that never serves the console has
no such table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, delete, select, update
from sqlalchemy.engine import Engine

COOKIE = "agenthub_console"
"""The session cookie (path `/ui`)."""
PRE_COOKIE = "agenthub_console_signin"
"""Before signing in: the sign-in form's CSRF value, echoed in the form (double submit)."""

_METADATA = MetaData()
TABLE = Table(
    "console_session",
    _METADATA,
    Column("id_hash", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("subject", String(256), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("last_used", Float, nullable=False, index=True),
)


@dataclass
class Session:
    """One signed-in browser."""

    id: str
    credential: str
    """The admin token or OIDC session token (never sent to the browser)."""
    subject: str
    csrf: str
    """The CSRF token every form of this session carries."""
    last_used: float


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The console sessions in the database, with idle expiry on an injectable clock (Unix seconds: every process
    compares the same instants). Blocking: callers run these in a worker thread."""

    def __init__(
        self, engine: Engine, secret: bytes, idle_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.idle_seconds = idle_seconds
        self.touch_seconds = min(60.0, idle_seconds / 10)
        """A session's last use is written at most this often: a page view is then a read, not a commit (an
        fsync), and the idle timeout is exact to within this."""
        self._engine = engine
        self._aead = AESGCM(hmac.new(secret, b"agenthub console session", hashlib.sha256).digest())
        self._clock = clock
        TABLE.create(engine, checkfirst=True)

    def open(self, credential: str, subject: str) -> Session:
        """A new session with a fresh random id and CSRF token; sessions idle too long are deleted on the way."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), credential, subject, secrets.token_urlsafe(32), now)
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, credential.encode(), _hash(session.id).encode())
        with self._engine.begin() as conn:
            conn.execute(delete(TABLE).where(TABLE.c.last_used < now - self.idle_seconds))
            conn.execute(
                TABLE.insert().values(
                    id_hash=_hash(session.id), sealed=sealed, subject=subject, csrf=session.csrf, last_used=now
                )
            )
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie's id (marking it used now), or None when unknown or idle too long."""
        if not session_id or len(session_id) > 128:
            return None
        key, now = _hash(session_id), self._clock()
        with self._engine.connect() as conn:
            row = conn.execute(select(TABLE).where(TABLE.c.id_hash == key)).mappings().first()
        if row is None:
            return None
        idle = now - row["last_used"]
        if idle > self.idle_seconds:
            self.close(session_id)
            return None
        if idle >= self.touch_seconds:
            with self._engine.begin() as conn:
                conn.execute(update(TABLE).where(TABLE.c.id_hash == key).values(last_used=now))
        sealed: bytes = row["sealed"]
        try:
            credential = self._aead.decrypt(sealed[:12], sealed[12:], key.encode()).decode()
        except InvalidTag:  # sealed under an audit key no longer in use: sign in again
            return None
        return Session(session_id, credential, row["subject"], row["csrf"], now)

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._engine.begin() as conn:
                conn.execute(delete(TABLE).where(TABLE.c.id_hash == _hash(session_id)))

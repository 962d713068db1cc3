"""The hub's upstream token store: `connectors.auth.TokenStore` on the SQL database, encrypted at rest.

Tokens, PKCE verifiers and registered client secrets are sealed with AES-256-GCM under a key derived from
`AGENTHUB_MASTER_KEY` (`connectors.auth.TokenCipher`); the associated data binds each ciphertext to its row. A
key check value is stored on first use and compared at every start, so a missing or wrong key stops the hub
with a clear message instead of failing on the first call. Only metadata (server, subject, expiry, version) is
plaintext; states are stored by hash. It also keeps the per-user authorization links (`hub.upstream_auth.flows`),
by hash of their one-time id, with the hash of the browser that claimed each.

Every replica shares these rows: refresh collapses across replicas through `lease` and `save`, which are
compare-and-swap updates on the `version` column (the replica that loses the lease waits for the winner's tokens
and uses them, so a rotating refresh token is spent once). A save or delete also appends to the change log, so the
other processes drop the tokens they hold in memory. Methods run the blocking database work in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import orjson
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from connectors.auth import ClientIdentity, MasterKeyError, PendingAuthorization, TokenCipher, TokenRecord, TokenSet
from hub.store.changes import ChangeRow, announce, origin
from hub.store.upstream_tables import UpstreamAuthFlowRow, UpstreamAuthStateRow, UpstreamClientRow, UpstreamTokenRow
from hub.upstream_auth.flows import AuthFlow, digest

TOKENS_CHANGED = "upstream_tokens"
"""The change log's kind for stored upstream tokens that were replaced or deleted."""

_TABLES = ("upstream_tokens", "upstream_auth_states", "upstream_auth_flows", "upstream_clients", "upstream_key_check")


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


class SqlTokenStore:
    """`TokenStore` on a SQLAlchemy engine (SQLite or PostgreSQL), sealed with a `TokenCipher`."""

    def __init__(self, engine: Engine, cipher: TokenCipher) -> None:
        """Create the tables if missing and check the master key.

        Raises:
            MasterKeyError: the master key is not the one existing rows were sealed with.
        """
        self._engine = engine
        self._cipher = cipher
        self._tokens = _table("upstream_tokens")
        self._states = _table("upstream_auth_states")
        self._flows = _table("upstream_auth_flows")
        self._clients = _table("upstream_clients")
        SQLModel.metadata.create_all(engine, tables=[*(_table(n) for n in _TABLES), _table("changes")])
        self._check_key()

    @classmethod
    def from_env(cls, engine: Engine, environ: Mapping[str, str] | None = None) -> SqlTokenStore:
        """The store sealed with `AGENTHUB_MASTER_KEY`.

        Raises:
            MasterKeyError: the key is missing, too short, or wrong for the stored rows.
        """
        return cls(engine, TokenCipher.from_env(environ))

    def _check_key(self) -> None:
        table = _table("upstream_key_check")
        with self._engine.begin() as conn:
            stored = conn.execute(select(table.c.value).where(table.c.id == "tokens")).scalar()
            if stored is None:
                try:
                    conn.execute(insert(table).values(id="tokens", value=self._cipher.key_check_value()))
                except IntegrityError:
                    stored = conn.execute(select(table.c.value).where(table.c.id == "tokens")).scalar()
        if stored is not None:
            self._cipher.verify_key_check_value(str(stored))

    # -- tokens ------------------------------------------------------------------------------------------------

    async def load(self, server: str, subject: str) -> TokenRecord | None:
        return await anyio.to_thread.run_sync(self._load, server, subject)

    def _load(self, server: str, subject: str) -> TokenRecord | None:
        t = self._tokens
        with self._engine.connect() as conn:
            row = conn.execute(
                select(t.c.sealed, t.c.version, t.c.lease_until).where(t.c.server == server, t.c.subject == subject)
            ).first()
        if row is None:
            return None
        plain = self._cipher.open(row.sealed, f"token|{server}|{subject}")
        return TokenRecord(TokenSet.from_json(plain), int(row.version), float(row.lease_until))

    async def save(
        self, server: str, subject: str, tokens: TokenSet, *, expected_version: int | None
    ) -> TokenRecord | None:
        return await anyio.to_thread.run_sync(self._save, server, subject, tokens, expected_version)

    def _save(self, server: str, subject: str, tokens: TokenSet, expected: int | None) -> TokenRecord | None:
        t = self._tokens
        values: dict[str, Any] = {
            "sealed": self._cipher.seal(tokens.to_json(), f"token|{server}|{subject}"),
            "expires_at": tokens.expires_at,
            "lease_until": 0.0,
            "updated_at": datetime.now(UTC),
        }
        key = (t.c.server == server, t.c.subject == subject)
        if expected is not None:
            with self._engine.begin() as conn:
                done = conn.execute(
                    update(t).where(*key, t.c.version == expected).values(version=expected + 1, **values)
                )
                if done.rowcount == 1:
                    self._changed(conn)
            if done.rowcount != 1:
                return None
            self._announce()
            return TokenRecord(tokens, expected + 1)
        try:
            version = self._upsert(server, subject, values)
        except IntegrityError:  # another replica inserted the row first: overwrite it
            version = self._upsert(server, subject, values)
        self._announce()
        return TokenRecord(tokens, version)

    def _upsert(self, server: str, subject: str, values: dict[str, Any]) -> int:
        t = self._tokens
        key = (t.c.server == server, t.c.subject == subject)
        with self._engine.begin() as conn:
            current = conn.execute(select(t.c.version).where(*key)).scalar()
            self._changed(conn)
            if current is None:
                conn.execute(insert(t).values(server=server, subject=subject, version=1, **values))
                return 1
            conn.execute(update(t).where(*key).values(version=t.c.version + 1, **values))
            return int(conn.execute(select(t.c.version).where(*key)).scalar_one())

    async def lease(self, server: str, subject: str, *, expected_version: int, until: float) -> TokenRecord | None:
        return await anyio.to_thread.run_sync(self._lease, server, subject, expected_version, until)

    def _lease(self, server: str, subject: str, expected: int, until: float) -> TokenRecord | None:
        t = self._tokens
        with self._engine.begin() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.server == server, t.c.subject == subject, t.c.version == expected)
                .values(version=expected + 1, lease_until=until)
            )
            if done.rowcount != 1:
                return None
        record = self._load(server, subject)
        return record if record is not None and record.version == expected + 1 else None

    async def delete(self, server: str, subject: str, *, expected_version: int | None = None) -> None:
        await anyio.to_thread.run_sync(self._delete, server, subject, expected_version)

    def _delete(self, server: str, subject: str, expected: int | None) -> None:
        t = self._tokens
        condition = [t.c.server == server, t.c.subject == subject]
        if expected is not None:
            condition.append(t.c.version == expected)
        with self._engine.begin() as conn:
            deleted = conn.execute(delete(t).where(*condition)).rowcount
            if deleted:
                self._changed(conn)
        if deleted:
            self._announce()

    def _changed(self, conn: Connection) -> None:
        """Record in the change log, in this transaction, that stored tokens changed: other processes then drop the
        tokens they hold in memory and read the new ones (`HubAuth.follow`)."""
        conn.execute(insert(ChangeRow).values(kind=TOKENS_CHANGED, origin=origin(self._engine), at=datetime.now(UTC)))

    def _announce(self) -> None:
        """After the commit: notify the other processes at once (Redis, when configured)."""
        announce(origin(self._engine), frozenset({TOKENS_CHANGED}))

    # -- pending authorizations --------------------------------------------------------------------------------

    async def put_pending(self, pending: PendingAuthorization) -> None:
        await anyio.to_thread.run_sync(self._put_pending, pending)

    def _put_pending(self, p: PendingAuthorization) -> None:
        s = self._states
        state_hash = digest(p.state)
        doc = {
            "verifier": p.code_verifier,
            "redirect_uri": p.redirect_uri,
            "issuer": p.issuer,
            "resource": p.resource,
            "binding": p.binding,
        }
        sealed = self._cipher.seal(orjson.dumps(doc), f"state|{state_hash}|{p.server}|{p.subject}")
        with self._engine.begin() as conn:
            conn.execute(delete(s).where(s.c.expires_at < p.expires_at - 3600))
            conn.execute(
                insert(s).values(
                    state_hash=state_hash, server=p.server, subject=p.subject, sealed=sealed, expires_at=p.expires_at
                )
            )

    async def take_pending(self, state: str, *, now: float) -> PendingAuthorization | None:
        return await anyio.to_thread.run_sync(self._take_pending, state, now)

    def _take_pending(self, state: str, now: float) -> PendingAuthorization | None:
        s = self._states
        state_hash = digest(state)
        with self._engine.begin() as conn:
            row = conn.execute(select(s).where(s.c.state_hash == state_hash)).first()
            if row is None or conn.execute(delete(s).where(s.c.state_hash == state_hash)).rowcount != 1:
                return None
        if float(row.expires_at) <= now:
            return None
        doc = orjson.loads(self._cipher.open(row.sealed, f"state|{state_hash}|{row.server}|{row.subject}"))
        return PendingAuthorization(
            state=state,
            server=row.server,
            subject=row.subject,
            code_verifier=doc["verifier"],
            redirect_uri=doc["redirect_uri"],
            issuer=doc["issuer"],
            resource=doc["resource"],
            expires_at=float(row.expires_at),
            binding=doc.get("binding", ""),
        )

    # -- per-user authorization links ----------------------------------------------------------------------------

    async def put_flow(self, flow_id: str, flow: AuthFlow) -> None:
        await anyio.to_thread.run_sync(self._put_flow, flow_id, flow)

    def _put_flow(self, flow_id: str, flow: AuthFlow) -> None:
        f = self._flows
        with self._engine.begin() as conn:
            conn.execute(delete(f).where(f.c.expires_at < flow.expires_at - 3600))
            conn.execute(
                insert(f).values(
                    flow_hash=digest(flow_id),
                    server=flow.server,
                    subject=flow.subject,
                    claim=flow.claim,
                    expires_at=flow.expires_at,
                )
            )

    async def claim_flow(self, flow_id: str, claim: str, *, now: float) -> AuthFlow | None:
        return await anyio.to_thread.run_sync(self._claim_flow, flow_id, claim, now)

    def _claim_flow(self, flow_id: str, claim: str, now: float) -> AuthFlow | None:
        f = self._flows
        key = f.c.flow_hash == digest(flow_id)
        with self._engine.begin() as conn:
            conn.execute(update(f).where(key, f.c.claim == "", f.c.expires_at > now).values(claim=claim))
            row = conn.execute(select(f).where(key, f.c.expires_at > now)).first()
        return None if row is None else AuthFlow(row.server, row.subject, float(row.expires_at), row.claim)

    async def take_flow(self, flow_id: str, claim: str, *, now: float) -> AuthFlow | None:
        return await anyio.to_thread.run_sync(self._take_flow, flow_id, claim, now)

    def _take_flow(self, flow_id: str, claim: str, now: float) -> AuthFlow | None:
        f = self._flows
        where = (f.c.flow_hash == digest(flow_id), f.c.claim == claim, f.c.claim != "", f.c.expires_at > now)
        with self._engine.begin() as conn:
            row = conn.execute(select(f).where(*where)).first()
            if row is None or conn.execute(delete(f).where(*where)).rowcount != 1:
                return None
        return AuthFlow(row.server, row.subject, float(row.expires_at), row.claim)

    # -- registered clients ------------------------------------------------------------------------------------

    async def load_client(self, server: str, issuer: str) -> ClientIdentity | None:
        return await anyio.to_thread.run_sync(self._load_client, server, issuer)

    def _load_client(self, server: str, issuer: str) -> ClientIdentity | None:
        c = self._clients
        with self._engine.connect() as conn:
            sealed = conn.execute(select(c.c.sealed).where(c.c.server == server, c.c.issuer == issuer)).scalar()
        if sealed is None:
            return None
        return ClientIdentity.from_json(self._cipher.open(str(sealed), f"client|{server}|{issuer}"))

    async def save_client(self, server: str, issuer: str, client: ClientIdentity) -> None:
        await anyio.to_thread.run_sync(self._save_client, server, issuer, client)

    def _save_client(self, server: str, issuer: str, client: ClientIdentity) -> None:
        c = self._clients
        sealed = self._cipher.seal(client.to_json(), f"client|{server}|{issuer}")
        with self._engine.begin() as conn:
            conn.execute(delete(c).where(c.c.server == server, c.c.issuer == issuer))
            conn.execute(insert(c).values(server=server, issuer=issuer, sealed=sealed))


__all__ = [
    "MasterKeyError",
    "SqlTokenStore",
    "UpstreamAuthFlowRow",
    "UpstreamAuthStateRow",
    "UpstreamClientRow",
    "UpstreamTokenRow",
]

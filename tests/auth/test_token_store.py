"""The hub's SQL token store: ciphertext at rest, the master key check, and refresh across replicas."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from connectors.auth import MasterKeyError, OAuth2Auth, TokenCipher, TokenSet, UpstreamAuths
from connectors.auth.oauth import ClientIdentity
from connectors.auth.store import PendingAuthorization
from hub.upstream_auth.flows import AuthFlow, FlowStore, MemoryFlowStore
from hub.upstream_auth.store import SqlTokenStore
from tests.auth.conftest import upstream_client, whoami
from tests.auth.servers import HUB_CLIENT_ID, HUB_CLIENT_SECRET, REDIRECT, oauth_stack
from tests.auth.test_authorization_code import browser_authorize
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

KEY = "k" * 20 + "-master-key-for-tests-0123"
OTHER_KEY = "o" * 20 + "-another-master-key-999999"


def engine(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})


def sample(token: str = "at-secret-value-123456", refresh: str | None = "rt-secret-value-654321") -> TokenSet:
    now = time.time()
    return TokenSet(access_token=token, obtained_at=now, expires_at=now + 3600, refresh_token=refresh, issuer="i")


async def test_tokens_verifiers_and_client_secrets_are_ciphertext_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    store = SqlTokenStore(engine(db), TokenCipher(KEY))
    await store.save("tickets", "alice", sample(), expected_version=None)
    await store.put_pending(
        PendingAuthorization(
            state="state-secret-abcdef",
            server="tickets",
            subject="alice",
            code_verifier="verifier-secret-xyz",
            redirect_uri=REDIRECT,
            issuer="i",
            resource="r",
            expires_at=time.time() + 600,
            binding="b" * 64,
        )
    )
    await store.put_flow("flow-secret-ghijkl", AuthFlow("tickets", "alice", time.time() + 600))
    await store.save_client("tickets", "i", ClientIdentity("cid", "client-secret-qwerty", "client_secret_basic"))
    raw = (
        db.read_bytes() + (tmp_path / "hub.db-wal").read_bytes()
        if (tmp_path / "hub.db-wal").exists()
        else db.read_bytes()
    )
    for secret in (
        b"at-secret-value",
        b"rt-secret-value",
        b"state-secret",
        b"flow-secret",
        b"verifier-secret",
        b"client-secret-qwerty",
    ):
        assert secret not in raw
    with sqlite3.connect(db) as conn:
        (sealed,) = conn.execute("select sealed from upstream_tokens").fetchone()
    assert sealed.startswith("v1.")
    loaded = await store.load("tickets", "alice")
    assert loaded is not None and loaded.tokens.access_token == "at-secret-value-123456"
    pending = await store.take_pending("state-secret-abcdef", now=time.time())
    assert pending is not None and pending.code_verifier == "verifier-secret-xyz"
    assert pending.binding == "b" * 64
    assert await store.take_pending("state-secret-abcdef", now=time.time()) is None, "single use"
    client = await store.load_client("tickets", "i")
    assert client is not None and client.client_secret == "client-secret-qwerty"


@pytest.fixture(params=["sql", "memory"])
def flows(request: pytest.FixtureRequest, tmp_path: Path) -> FlowStore:
    if request.param == "memory":
        return MemoryFlowStore()
    return SqlTokenStore(engine(tmp_path / "hub.db"), TokenCipher(KEY))


async def test_a_link_is_claimed_by_the_first_browser_used_up_by_it_once_and_expires(flows: FlowStore) -> None:
    now = time.time()
    mine, theirs = "a" * 64, "b" * 64
    await flows.put_flow("flow-1", AuthFlow("tickets", "key-1", now + 600))
    assert await flows.take_flow("flow-1", "", now=now) is None, "an unclaimed link cannot be used"
    assert await flows.claim_flow("flow-1", mine, now=now) == AuthFlow("tickets", "key-1", now + 600, mine)
    assert await flows.claim_flow("flow-1", mine, now=now) == AuthFlow("tickets", "key-1", now + 600, mine)
    claimed = await flows.claim_flow("flow-1", theirs, now=now)
    assert claimed is not None and claimed.claim == mine, "the first browser keeps it"
    assert await flows.take_flow("flow-1", theirs, now=now) is None
    assert await flows.take_flow("flow-1", mine, now=now + 600) is None, "expired"
    assert await flows.take_flow("flow-1", mine, now=now) == AuthFlow("tickets", "key-1", now + 600, mine)
    assert await flows.take_flow("flow-1", mine, now=now) is None, "used once"
    assert await flows.claim_flow("flow-1", mine, now=now) is None
    assert await flows.claim_flow("unknown", mine, now=now) is None

    await flows.put_flow("flow-2", AuthFlow("tickets", "key-1", now + 600))
    assert await flows.claim_flow("flow-2", mine, now=now + 600) is None, "an expired link cannot be claimed"


async def test_a_wrong_or_missing_master_key_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    await SqlTokenStore(engine(db), TokenCipher(KEY)).save("t", "a", sample(), expected_version=None)
    with pytest.raises(MasterKeyError, match="not the key"):
        SqlTokenStore(engine(db), TokenCipher(OTHER_KEY))
    with pytest.raises(MasterKeyError, match="not set"):
        SqlTokenStore.from_env(engine(db), {})
    with pytest.raises(MasterKeyError, match="at least"):
        SqlTokenStore.from_env(engine(db), {"AGENTHUB_MASTER_KEY": "short"})
    reopened = SqlTokenStore.from_env(engine(db), {"AGENTHUB_MASTER_KEY": KEY})
    record = await reopened.load("t", "a")
    assert record is not None and record.tokens.refresh_token == "rt-secret-value-654321"


async def test_a_row_copied_under_another_subject_does_not_open(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    store = SqlTokenStore(engine(db), TokenCipher(KEY))
    await store.save("tickets", "alice", sample(), expected_version=None)
    await store.save("tickets", "mallory", sample("other-token"), expected_version=None)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "update upstream_tokens set sealed = (select sealed from upstream_tokens where subject = 'alice') "
            "where subject = 'mallory'"
        )
    with pytest.raises(MasterKeyError):
        await store.load("tickets", "mallory")


async def test_compare_and_swap_lets_one_writer_win(tmp_path: Path) -> None:
    store = SqlTokenStore(engine(tmp_path / "hub.db"), TokenCipher(KEY))
    first = await store.save("t", "a", sample(), expected_version=None)
    assert first is not None and first.version == 1
    leased = await store.lease("t", "a", expected_version=1, until=time.time() + 30)
    assert leased is not None and leased.version == 2 and leased.lease_until > time.time()
    assert await store.lease("t", "a", expected_version=1, until=time.time() + 30) is None
    assert await store.save("t", "a", sample("late"), expected_version=1) is None
    saved = await store.save("t", "a", sample("new"), expected_version=2)
    assert saved is not None and saved.version == 3
    current = await store.load("t", "a")
    assert current is not None and current.tokens.access_token == "new" and current.lease_until == 0.0
    await store.delete("t", "a", expected_version=2)
    assert await store.load("t", "a") is not None, "a stale delete does nothing"
    await store.delete("t", "a", expected_version=3)
    assert await store.load("t", "a") is None


async def test_two_replicas_refreshing_one_rotating_token_make_one_refresh(tmp_path: Path) -> None:
    """Two hubs over one database (separate engines and caches), each with 25 calls on an expired token."""
    config = OAuth2Auth(
        type="oauth2", grant="authorization_code", client_id=HUB_CLIENT_ID, client_secret=HUB_CLIENT_SECRET
    )
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with oauth_stack() as stack:
        replicas: list[UpstreamAuths] = []
        for _ in range(2):
            auths = UpstreamAuths(SqlTokenStore(engine(tmp_path / "hub.db"), TokenCipher(KEY)), clock=clock)
            auths.add("tickets", stack.upstream_url, config, redirect_uri=REDIRECT, insecure_loopback=True)
            replicas.append(auths)
        with anyio.fail_after(PATIENCE):
            url = await replicas[0].start_authorization("tickets", None)
            await replicas[1].complete_authorization(*await browser_authorize(url, "admin"))
            async with (
                upstream_client(replicas[0], "tickets", stack.upstream_url) as one,
                upstream_client(replicas[1], "tickets", stack.upstream_url) as two,
            ):
                assert await whoami(one) == "admin" and await whoami(two) == "admin"
                offset[0] = 3600.0
                results: list[str] = []

                async def call(client: object) -> None:
                    assert client is one or client is two
                    results.append(await whoami(one if client is one else two))

                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(call, one if i % 2 else two)
            assert results == ["admin"] * 50
        assert stack.provider.requests["refresh_token"] == 1
        assert stack.provider.grants["refresh_token"] == 1
        for auths in replicas:
            await auths.aclose()

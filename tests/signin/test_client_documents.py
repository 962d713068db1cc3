"""Client ID metadata documents: fetched through the SSRF guard, size-limited, cached; and a client named by one
signs a person in like a registered client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlmodel import create_engine

from hub.signin.clients import ClientDirectory
from hub.signin.config import SignInSection
from hub.signin.store import SignInStore
from tests.signin.documents import DocumentServer, document_server
from tests.signin.helpers import CLIENT_REDIRECT, signin_hub
from tests.signin.test_sign_in_refusals import authorize_url, open_session, pkce, redeem, sign_in
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio]


def section(**overrides: Any) -> SignInSection:
    return SignInSection.model_validate(
        {
            "issuer": "http://127.0.0.1:8787",
            "idp": {"issuer": "https://login.example", "client_id": "hub"},
            "allowed_redirects": ["http://127.0.0.1/*"],
            **overrides,
        }  # fmt: skip
    )


def directory(tmp_path: Path, *, insecure_loopback: bool, clock: Any = None, **overrides: Any) -> ClientDirectory:
    store = SignInStore(create_engine(f"sqlite:///{tmp_path / 'signin.db'}"))
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return ClientDirectory(section(**overrides), store, insecure_loopback=insecure_loopback, **kwargs)


def document(served: DocumentServer, path: str, **fields: Any) -> dict[str, Any]:
    body = {"client_id": served.url(path), "client_name": "Doc Client", "redirect_uris": [CLIENT_REDIRECT], **fields}
    served.documents[path] = body
    return body


async def test_a_document_is_fetched_once_and_cached(tmp_path: Path) -> None:
    now = [1000.0]
    clients = directory(tmp_path, insecure_loopback=True, clock=lambda: now[0])
    async with document_server() as served:
        document(served, "/client.json")
        first = await clients.get(served.url("/client.json"))
        assert first is not None and first.client_name == "Doc Client"
        assert first.token_endpoint_auth_method == "none"
        assert await clients.get(served.url("/client.json")) == first
        assert served.requests == ["/client.json"]
        now[0] += 301  # past client_metadata_cache_s
        assert await clients.get(served.url("/client.json")) == first
        assert served.requests == ["/client.json", "/client.json"]


async def test_unusable_documents_name_no_client(tmp_path: Path) -> None:
    clients = directory(tmp_path, insecure_loopback=True, client_metadata_max_bytes=1024)
    async with document_server() as served:
        document(served, "/big.json", client_name="x" * 2000)
        document(served, "/other-id.json")["client_id"] = served.url("/elsewhere.json")
        document(served, "/secret.json", token_endpoint_auth_method="client_secret_basic")
        document(served, "/redirect.json", redirect_uris=["https://attacker.example/cb"])
        for path in ("/big.json", "/other-id.json", "/secret.json", "/redirect.json", "/missing.json"):
            assert await clients.get(served.url(path)) is None, path


async def test_documents_on_loopback_or_private_addresses_are_refused_without_a_connection(tmp_path: Path) -> None:
    clients = directory(tmp_path, insecure_loopback=False)
    connections: list[str] = []

    async def count(stream: Any) -> None:
        connections.append("connected")
        await stream.aclose()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, count)
        assert not clients.is_document_url(f"http://127.0.0.1:{port}/client.json")  # plain http: not even a URL
        assert await clients.get(f"https://127.0.0.1:{port}/client.json") is None
        assert await clients.get("https://10.1.2.3/client.json") is None
        assert await clients.get("https://169.254.169.254/latest/meta-data/client.json") is None
        tg.cancel_scope.cancel()
    assert connections == []


async def test_a_client_named_by_its_document_signs_a_person_in(tmp_path: Path) -> None:
    async with (
        document_server() as served,
        signin_hub(tmp_path) as hub,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
    ):
        client_id = document(served, "/cursor.json")["client_id"]
        verifier, challenge = pkce()
        landed = await sign_in(hub, client_id, challenge)
        tokens = await redeem(http, hub, client_id, landed["code"], verifier)
        assert tokens.status_code == 200, tokens.text
        assert (await open_session(http, hub.url("/mcp"), tokens.json()["access_token"])).status_code == 200
        unknown = await http.get(authorize_url(hub, served.url("/nothing.json"), challenge))
        assert unknown.status_code == 400
        assert json.loads(unknown.text)["error"] == "invalid_request"


async def test_unused_registrations_expire_and_are_forgotten(tmp_path: Path) -> None:
    from mcp.shared.auth import OAuthClientInformationFull
    from pydantic import AnyUrl

    now = [1_700_000_000.0]
    clients = directory(tmp_path, insecure_loopback=False, clock=lambda: now[0], client_ttl="30d", max_clients=1)

    def client(client_id: str) -> OAuthClientInformationFull:
        return OAuthClientInformationFull(client_id=client_id, redirect_uris=[AnyUrl(CLIENT_REDIRECT)])

    await clients.register(client("old"), "127.0.0.1")
    assert await clients.get("old") is not None
    now[0] += 29 * 86400
    await clients.used("old")  # a token keeps it alive
    now[0] += 29 * 86400
    assert await clients.get("old") is not None
    now[0] += 31 * 86400
    assert await clients.get("old") is None
    await clients.register(client("new"), "127.0.0.1")  # the cap of one counts only live registrations
    assert await clients.get("new") is not None

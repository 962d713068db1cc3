"""The clients that may ask for a sign-in: registered dynamically (RFC 7591), or named by the URL of their client
ID metadata document, which the hub fetches through the SSRF guard, bounds in size and caches.

Dynamic registration is capped (`max_clients`), rate-limited per source address (`registrations_per_source` an
hour), and a registration that obtains no token for `client_ttl` is forgotten. Every redirect URI a client names,
however it was registered, must be one the operator allows (`allowed_redirects`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio
import httpx2
from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from connectors.auth.egress import EgressClient, EgressPolicy
from connectors.auth.errors import UnsafeURL
from hub.signin.client_auth import hashed_secret
from hub.signin.config import SignInSection
from hub.signin.store import SignInStore, aware
from hub.store.signin_tables import SignInClientRow

_CACHE_SIZE = 256
_WINDOW_S = 3600.0


class ClientDirectory:
    """Looks clients up (registered, or by metadata document URL) and registers new ones."""

    def __init__(
        self,
        section: SignInSection,
        store: SignInStore,
        *,
        insecure_loopback: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._section = section
        self._store = store
        self._clock = clock
        self._insecure = insecure_loopback
        self._policy = EgressPolicy(
            insecure_loopback=insecure_loopback, max_response_bytes=section.client_metadata_max_bytes, timeout_s=5.0
        )
        self._documents: OrderedDict[str, tuple[float, OAuthClientInformationFull | None]] = OrderedDict()

    def is_document_url(self, client_id: str) -> bool:
        """Whether `client_id` names a client ID metadata document (an https URL with a path; plain http to
        loopback only where `[hub] insecure_loopback` allows it)."""
        if client_id.startswith("https://"):
            return "/" in client_id[len("https://") :]
        return self._insecure and client_id.startswith("http://") and "/" in client_id[len("http://") :]

    async def get(self, client_id: str) -> OAuthClientInformationFull | None:
        """The client, or None when unknown, expired or its metadata document is unusable."""
        if self.is_document_url(client_id):
            return await self._document(client_id)
        row = await anyio.to_thread.run_sync(self._store.client, client_id)
        if row is None:
            return None
        unused = datetime.fromtimestamp(self._clock(), UTC) - aware(row.last_used_at)
        if unused > self._section.ttl("client_ttl"):
            return None
        client = OAuthClientInformationFull.model_validate_json(row.document)
        allowed = [uri for uri in client.redirect_uris or () if self._section.redirect_allowed(str(uri))]
        if client.redirect_uris and not allowed:  # the operator no longer allows where it would send people
            return None
        return client.model_copy(update={"redirect_uris": allowed or None})

    async def used(self, client_id: str) -> None:
        """A client obtained a token: its registration stays alive."""
        if not self.is_document_url(client_id):
            now = datetime.fromtimestamp(self._clock(), UTC)
            await anyio.to_thread.run_sync(self._store.touch_client, client_id, now)

    async def admit_registration(self, source: str) -> bool:
        """Count one registration attempt from `source`; False once it made its hourly allowance (counted in the
        database: replicas sharing it share the allowance)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        allowance = self._section.registrations_per_source
        window_start = now - timedelta(seconds=_WINDOW_S)
        return await anyio.to_thread.run_sync(self._store.admit_registration, source, now, window_start, allowance)

    async def register(self, client: OAuthClientInformationFull, source: str) -> None:
        """Store a dynamic registration, its client secret (if it has one) only hashed.

        Raises:
            RegistrationError: a redirect URI the operator does not allow, or the cap on clients is reached.
        """
        self.check_redirects(client)
        if client.client_secret is not None:
            client = client.model_copy(update={"client_secret": hashed_secret(client.client_secret)})
        now = datetime.fromtimestamp(self._clock(), UTC)
        await anyio.to_thread.run_sync(self._store.forget_clients, now - self._section.ttl("client_ttl"))
        row = SignInClientRow(
            client_id=client.client_id or "",
            document=client.model_dump_json(exclude_none=True),
            source=source,
            created_at=now,
            last_used_at=now,
        )
        if not await anyio.to_thread.run_sync(self._store.add_client, row, self._section.max_clients):
            raise RegistrationError("invalid_client_metadata", "this hub accepts no more client registrations")

    def check_redirects(self, client: OAuthClientInformationFull) -> None:
        """Raises `RegistrationError` when a redirect URI is not one the operator allows."""
        for uri in client.redirect_uris or ():
            if not self._section.redirect_allowed(str(uri)):
                raise RegistrationError("invalid_redirect_uri", f"redirect URI {uri} is not allowed on this hub")

    async def _document(self, url: str) -> OAuthClientInformationFull | None:
        now = self._clock()
        cached = self._documents.get(url)
        if cached is not None and cached[0] > now:
            self._documents.move_to_end(url)
            return cached[1]
        client = await self._fetch(url)
        self._documents[url] = (now + self._section.client_metadata_cache_s, client)
        while len(self._documents) > _CACHE_SIZE:
            self._documents.popitem(last=False)
        return client

    async def _fetch(self, url: str) -> OAuthClientInformationFull | None:
        """The client a metadata document describes; None when it cannot be fetched or read, names another
        client_id, asks for a client secret, or lists a redirect URI the operator does not allow."""
        try:
            async with EgressClient(self._policy) as http:
                response = await http.get(url)
        except (UnsafeURL, httpx2.HTTPError, TimeoutError):
            return None
        document = response.json_object() if response.status == 200 else None
        if document is None or document.get("client_id") != url:
            return None
        if document.get("token_endpoint_auth_method", "none") != "none" or "client_secret" in document:
            return None
        try:
            client = OAuthClientInformationFull.model_validate({**document, "token_endpoint_auth_method": "none"})
        except ValidationError:
            return None
        if not client.redirect_uris:
            return None
        try:
            self.check_redirects(client)
        except RegistrationError:
            return None
        return client

"""Client authentication at the token and revocation endpoints, against secrets the hub keeps only hashed.

A confidential client's secret is a 256-bit random string the registration endpoint generates, so the hub stores
only its SHA-256 (as it does for codes and tokens): a copy of the database gives no usable secret. The SDK's
`ClientAuthenticator` compares the stored secret with the presented one as plain text; this one reads the
credentials the same way (`client_secret_basic`, `client_secret_post`, or none for a public client), answers
with the same messages, and compares hashes in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import OAuthAuthorizationServerProvider
from mcp.shared.auth import OAuthClientInformationFull
from starlette.requests import Request

from hub.signin.store import token_hash

SECRET_HASH_PREFIX = "sha256:"  # noqa: S105 - a prefix
"""What a stored client secret starts with: it is a hash, never a secret a client could present."""


def hashed_secret(secret: str) -> str:
    """The stored form of a client secret."""
    return SECRET_HASH_PREFIX + token_hash(secret)


class HashedSecretAuthenticator(ClientAuthenticator):
    """Authenticates a client by the hash of its secret (a drop-in for the SDK's authenticator)."""

    def __init__(
        self, provider: OAuthAuthorizationServerProvider[Any, Any, Any], *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(provider)
        self._clock = clock

    async def authenticate_request(self, request: Request) -> OAuthClientInformationFull:
        """The client the request authenticates as.

        Raises:
            AuthenticationError: no or an unknown client_id, malformed credentials, a missing or wrong secret.
        """
        form = await request.form()
        client_id = form.get("client_id")
        if not client_id or not isinstance(client_id, str):
            raise AuthenticationError("Missing client_id")
        client = await self.provider.get_client(client_id)
        if client is None:
            raise AuthenticationError("Invalid client_id")
        method = client.token_endpoint_auth_method
        if method == "client_secret_basic":
            presented = _basic_secret(request.headers.get("Authorization", ""), client_id)
        elif method == "client_secret_post":
            posted = form.get("client_secret")
            presented = posted if isinstance(posted, str) else None
        elif method == "none":
            presented = None
        else:
            raise AuthenticationError(f"Unsupported auth method: {method}")
        stored = client.client_secret
        if method != "none" and not stored:
            raise AuthenticationError("Client is registered for secret-based authentication but has no stored secret")
        if stored:
            if not presented:
                raise AuthenticationError("Client secret is required")
            if not hmac.compare_digest(hashed_secret(presented).encode(), stored.encode()):
                raise AuthenticationError("Invalid client_secret")
            if client.client_secret_expires_at and client.client_secret_expires_at < int(self._clock()):
                raise AuthenticationError("Client secret has expired")
        return client


def _basic_secret(header: str, client_id: str) -> str:
    """The secret of an HTTP Basic `Authorization` header for `client_id` (both parts URL-decoded, RFC 6749
    2.3.1)."""
    if not header.startswith("Basic "):
        raise AuthenticationError("Missing or invalid Basic authentication in Authorization header")
    try:
        decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise AuthenticationError("Invalid Basic authentication header") from None
    if ":" not in decoded:
        raise AuthenticationError("Invalid Basic authentication header")
    basic_id, secret = decoded.split(":", 1)
    if unquote(basic_id) != client_id:
        raise AuthenticationError("Client ID mismatch in Basic auth")
    return unquote(secret)

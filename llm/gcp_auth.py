"""Google service-account OAuth for Vertex AI: sign a JWT (RS256) and exchange it for an access token.

Tokens are cached until a minute before they expire; concurrent callers share one exchange.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from urllib.parse import urlencode

import anyio
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from llm.errors import ConfigError, ProviderHTTPError, ProviderResponseError
from llm.transport import Transport

__all__ = ["ServiceAccountTokens", "sign_jwt"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, object], private_key_pem: str) -> str:
    """A compact RS256 JWT of `claims` signed with a PEM private key."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("service-account private key cannot be loaded") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("service-account private key must be an RSA key")
    head = _b64(orjson.dumps({"alg": "RS256", "typ": "JWT"})) + "." + _b64(orjson.dumps(claims))
    signature = key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
    return head + "." + _b64(signature)


class ServiceAccountTokens:
    """Access tokens for one service account (its JSON key as text), cached."""

    def __init__(
        self,
        service_account_json: str,
        *,
        token_url: str,
        scope: str,
        transport: Transport,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            info = orjson.loads(service_account_json)
            self._email = str(info["client_email"])
            self._private_key = str(info["private_key"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                "Vertex AI key must be a service-account JSON with client_email and private_key"
            ) from None
        self._token_url = token_url
        self._scope = scope
        self._transport = transport
        self._clock = clock
        self._token = ""
        self._expires = 0.0
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"ServiceAccountTokens(email={self._email!r})"

    async def token(self) -> str:
        """A valid access token, exchanging a fresh JWT when the cached one is (nearly) expired."""
        if self._token and self._clock() < self._expires:
            return self._token
        async with self._lock:
            if self._token and self._clock() < self._expires:
                return self._token
            now = int(self._clock())
            assertion = sign_jwt(
                {"iss": self._email, "scope": self._scope, "aud": self._token_url, "iat": now, "exp": now + 3600},
                self._private_key,
            )
            form = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
            resp = await self._transport.request(
                "POST",
                self._token_url,
                headers={"content-type": "application/x-www-form-urlencoded"},
                body=form.encode(),
                timeout=30.0,
            )
            if resp.status >= 400:
                raise ProviderHTTPError(resp.status, code="token_exchange_failed")
            try:
                data = orjson.loads(resp.body)
                token = str(data["access_token"])
                lifetime = float(data.get("expires_in", 3600))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ProviderResponseError("malformed token response") from None
            self._token = token
            self._expires = now + max(0.0, lifetime - 60)
            return token

"""AWS Signature Version 4 for request headers (what Bedrock Runtime needs).

For services other than S3 the canonical URI encodes each path segment once more than the request line
does, so a Bedrock model id with `:` is sent as `%3A` and signed as `%253A`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

__all__ = ["SigV4Signer"]

_ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


class SigV4Signer:
    """Signs requests for one credential, region and service; caches the derived key per day."""

    __slots__ = ("_access_key_id", "_cache", "_region", "_secret", "_service", "_session_token")

    def __init__(
        self,
        *,
        access_key_id: str,
        secret_access_key: str,
        region: str,
        service: str,
        session_token: str | None = None,
    ) -> None:
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self._session_token = session_token
        self._region = region
        self._service = service
        self._cache: tuple[str, bytes] = ("", b"")

    def __repr__(self) -> str:
        return f"SigV4Signer(region={self._region!r}, service={self._service!r})"

    def _signing_key(self, day: str) -> bytes:
        if self._cache[0] != day:
            key = _hmac(("AWS4" + self._secret).encode(), day)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._cache = (day, key)
        return self._cache[1]

    def sign(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """Return `headers` plus `host`-signed `x-amz-date`, optional `x-amz-security-token` and `authorization`.

        Every header passed in is signed.
        """
        parts = urlsplit(url)
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed: dict[str, str] = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
        signed["host"] = parts.netloc
        signed["x-amz-date"] = stamp
        if self._session_token:
            signed["x-amz-security-token"] = self._session_token
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
        signed_names = ";".join(names)
        path = parts.path or "/"
        canonical_uri = path if self._service == "s3" else quote(path, safe="/-_.~")
        canonical = "\n".join(
            [
                method.upper(),
                canonical_uri,
                _canonical_query(parts.query),
                canonical_headers,
                signed_names,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = "\n".join([_ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        out = dict(headers)
        out["x-amz-date"] = stamp
        if self._session_token:
            out["x-amz-security-token"] = self._session_token
        credential = f"{self._access_key_id}/{scope}"
        out["authorization"] = (
            f"{_ALGORITHM} Credential={credential}, SignedHeaders={signed_names}, Signature={signature}"
        )
        return out

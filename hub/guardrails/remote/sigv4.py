"""AWS Signature Version 4 for the Bedrock Guardrails adapter: a thin wrapper over the LLM back end's signer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from llm.sigv4 import SigV4Signer

__all__ = ["AwsCredentials", "sign_request"]


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """An access key pair, with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus ``x-amz-date``, the session token and ``Authorization``; every given header is
    signed. The URL path must already be percent-encoded as it goes on the wire."""
    signer = SigV4Signer(
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        session_token=credentials.session_token,
        region=region,
        service=service,
    )
    signed = signer.sign(method, url, dict(headers), body, now=now)
    signed["Authorization"] = signed.pop("authorization")
    return signed

"""Shared parts of the remote adapters: the result type and a JSON POST with bounded retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx2
import orjson

from ..verdict import GuardrailServiceError, Scope

__all__ = ["RemoteGuardrail", "RemoteResult", "post_json", "require"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_DELAYS = (0.05, 0.2)


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """What a content-safety service said about one text.

    ``rules`` name what fired (``content:HATE``, ``pi_and_jailbreak``...); ``replacement`` is the
    service's own masked text when it offers one (used by the ``redact`` action).
    """

    intervened: bool
    rules: tuple[str, ...] = ()
    replacement: str | None = None
    detail: dict[str, str | float | int | bool] = field(default_factory=lambda: {})


class RemoteGuardrail(Protocol):
    """An adapter for one external content-safety API."""

    service: str

    async def evaluate(self, text: str, scope: Scope) -> RemoteResult:
        """Check ``text``.

        Raises:
            GuardrailServiceError: the service failed or answered something unreadable.
        """
        ...


def require(value: Any, kind: type, service: str, what: str) -> Any:
    """Return ``value`` if it is a ``kind``, else raise a malformed-response error."""
    if not isinstance(value, kind):
        raise GuardrailServiceError(service, f"malformed response: {what}")
    return value


async def post_json(
    client: httpx2.AsyncClient,
    service: str,
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    sign: Callable[[bytes, dict[str, str]], dict[str, str]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the JSON object answered.

    429 and 5xx answers are retried twice with a short back-off (the caller's timeout bounds the
    total); ``sign`` may add headers computed over the exact body bytes (SigV4).

    Raises:
        GuardrailServiceError: a non-2xx status after retries, a transport error or a non-object body.
    """
    payload = orjson.dumps(body)
    base_headers = {"content-type": "application/json", **headers}
    attempt = 0
    while True:
        request_headers = sign(payload, dict(base_headers)) if sign else base_headers
        try:
            response = await client.post(url, content=payload, headers=request_headers)
        except httpx2.HTTPError as exc:
            raise GuardrailServiceError(service, f"transport error: {type(exc).__name__}", retryable=True) from exc
        if response.status_code in RETRY_STATUSES and attempt < len(RETRY_DELAYS):
            await sleep(RETRY_DELAYS[attempt])
            attempt += 1
            continue
        if not 200 <= response.status_code < 300:
            raise GuardrailServiceError(
                service,
                f"HTTP {response.status_code} {_error_code(response)}".rstrip(),
                status=response.status_code,
                retryable=response.status_code in RETRY_STATUSES,
            )
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise GuardrailServiceError(service, "malformed response: not JSON") from exc
        return require(data, dict, service, "not a JSON object")


def _error_code(response: httpx2.Response) -> str:
    """The vendor's error code (never its message, which may quote the checked text)."""
    amz = response.headers.get("x-amzn-errortype")
    if amz:
        return amz.split(":")[0]
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    return ""

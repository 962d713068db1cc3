"""The console's way to the admin API: each action is an admin API request, served in-process.

A page that lists keys or revokes one builds the API request the CLI would send (method, `/api/v1/...` path,
query, JSON body) with the session's credential as its bearer token, and hands it to the API's own router. So
authentication, RBAC, body validation, the change and its audit entry (and the audit entry of a refusal) are
exactly the API's; the console only renders what came back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.routing import Router
from starlette.types import Message

from hub.paths import ADMIN_PREFIX


@dataclass
class ApiAnswer:
    """What the admin API answered."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict[str, str])
    set_cookies: list[str] = field(default_factory=list[str])

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def error(self) -> str:
        """The API's error message (its OpenAI-style envelope), or the status."""
        try:
            data = self.json()
        except orjson.JSONDecodeError:
            return f"the admin API answered {self.status}"
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return str(data["error"].get("message", self.status))
        return f"the admin API answered {self.status}"


def api_path(*parts: str) -> str:
    """`/api/v1/a/b` with each part percent-encoded (a name from a form can never leave its segment)."""
    return ADMIN_PREFIX + "".join("/" + quote(p, safe="") for p in parts)


class AdminBridge:
    """Sends admin API requests to the API's router without a network hop."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def call(
        self,
        request: Request,
        credential: str | None,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        cookies: Mapping[str, str] | None = None,
    ) -> ApiAnswer:
        """Serve `method path` as the admin API would for this browser (its address and user agent are the
        audit entry's), authenticated by `credential`."""
        payload = orjson.dumps(body) if body is not None else b""
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(payload)).encode()))
        if credential:
            headers.append((b"authorization", b"Bearer " + credential.encode()))
        agent = request.headers.get("user-agent")
        if agent:
            headers.append((b"user-agent", agent.encode("latin-1", "replace")))
        if cookies:
            headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": request.url.scheme,
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(dict(query or {})).encode(),
            "headers": headers,
            "client": request.scope.get("client"),
            "server": request.scope.get("server"),
            "path_params": {},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        answer = ApiAnswer(500, b"")
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                for name, value in message.get("headers", []):
                    key, text = name.decode("latin-1").lower(), value.decode("latin-1")
                    if key == "set-cookie":
                        answer.set_cookies.append(text)
                    else:
                        answer.headers[key] = text
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._router(scope, receive, send)
        answer.body = b"".join(chunks)
        return answer

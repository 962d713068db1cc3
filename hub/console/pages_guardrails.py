"""The guardrails page: the rules in force (from the config file and the admin API, credentials redacted as the
API shows them), the latest calls refused with `permission_error` (a guardrail's block, or a key's filter), and a
box to try a text on the rules (`POST /api/v1/guardrails/check`: nothing is logged or changed)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page

RECENT = 20


FIELDS = ("operation", "key", "team", "server")
"""Optional scope fields of the form, sent only when filled in."""


def check_body(form: dict[str, str]) -> dict[str, Any]:
    """The admin API body for the form (the API validates it and names a bad field)."""
    body: dict[str, Any] = {"text": form.get("text", ""), "direction": form.get("direction", "input")}
    door = form.get("door", "")
    if door:
        body["door"] = door
    body.update({name: form[name].strip() for name in FIELDS if form.get(name, "").strip()})
    return body


async def guardrails(console: Console, page: Page) -> Response:
    return await _render(console, page)


async def check(console: Console, page: Page) -> Response:
    """Try the submitted text; the page shows the verdict, or the API's refusal, beside the form it came from."""
    answer = await console.api(page, "POST", api_path("guardrails", "check"), body=check_body(page.form))
    if answer.status in (401, 403):
        return console.refused(page, answer)
    if answer.ok:
        return await _render(console, page, result=answer.json())
    return await _render(console, page, status=answer.status, problem=answer.error)


async def _render(console: Console, page: Page, status: int = 200, **values: Any) -> Response:
    rules = await console.api(page, "GET", api_path("guardrails"))
    if not rules.ok:
        return console.refused(page, rules)
    refused = await console.api(
        page, "GET", api_path("logs"), query={"outcome": "permission_error", "limit": str(RECENT), "total": "false"}
    )
    recent = refused.json()["data"] if refused.ok else None
    return console.render(
        "guardrails.html", page, status, rules=rules.json()["data"], recent=recent, tried=page.form, **values
    )


def routes(console: Console) -> list[Route]:
    return [
        Route(f"{UI_PREFIX}/guardrails", console.page(guardrails), methods=["GET"]),
        Route(f"{UI_PREFIX}/guardrails/check", console.page(check), methods=["POST"]),
    ]

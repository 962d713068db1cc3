"""The guardrails page: the rules in force (from the config file and the admin API, credentials redacted as the
API shows them) and the latest calls refused with `permission_error` (a guardrail's block, or a key's filter)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page

RECENT = 20


async def guardrails(console: Console, page: Page) -> Response:
    rules = await console.api(page, "GET", api_path("guardrails"))
    if not rules.ok:
        return console.refused(page, rules)
    refused = await console.api(
        page, "GET", api_path("logs"), query={"outcome": "permission_error", "limit": str(RECENT), "total": "false"}
    )
    recent = refused.json()["data"] if refused.ok else None
    return console.render("guardrails.html", page, rules=rules.json()["data"], recent=recent)


def routes(console: Console) -> list[Route]:
    return [Route(f"{UI_PREFIX}/guardrails", console.page(guardrails), methods=["GET"])]

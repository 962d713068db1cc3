"""The request-log and audit-log pages.

The request log takes the log API's filters and pages with its cursor: a "more" link that works as a plain link
(the next page) and, with JavaScript, loads the next rows in place when scrolled into view (htmx). One call's page
shows its tree (Agent Mode steps, Code Mode inner calls) with cost and tokens. The audit page lists entries newest
first, verifies the chain on request and links the export (each export is itself audited by the API).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from hub.audit.logquery import FILTER_NAMES
from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page

PAGE_ROWS = 50
AUDIT_ROWS = 100
FILTERS = (
    ("since", "Since (24h, 7d or a time)"), ("until", "Until"), ("key", "Key"), ("team", "Team"),
    ("customer", "Customer"), ("door", "Door"), ("operation", "Operation"), ("model", "Model"),
    ("server", "Server"), ("tool", "Tool"), ("status", "Status"), ("outcome", "Outcome"),
    ("min_latency_ms", "Min latency (ms)"), ("min_cost_usd", "Min cost (USD)"), ("loop", "Loop id"),
)  # fmt: skip
"""The log API's filters, in the order the form shows them, with their labels."""
assert {name for name, _label in FILTERS} == FILTER_NAMES


async def list_logs(console: Console, page: Page) -> Response:
    given = page.request.query_params
    filters = {name: given[name].strip() for name in FILTER_NAMES if given.get(name, "").strip()}
    query = {**filters, "limit": str(PAGE_ROWS), "total": "false"}
    cursor = given.get("cursor")
    if cursor:
        query["cursor"] = cursor
    answer = await console.api(page, "GET", api_path("logs"), query=query)
    if not answer.ok:
        return console.refused(page, answer)
    body = answer.json()
    following = body.get("next_cursor")
    more = f"{UI_PREFIX}/logs?{urlencode({**filters, 'cursor': following})}" if following else None
    values: dict[str, Any] = {"rows": body["data"], "more": more}
    if page.request.headers.get("hx-request") == "true" and cursor:
        return console.render("log_rows.html", page, **values)
    return console.render("logs.html", page, filters=filters, fields=FILTERS, **values)


async def show_call(console: Console, page: Page) -> Response:
    call_id = page.request.path_params["call_id"]
    answer = await console.api(page, "GET", api_path("logs", call_id))
    if not answer.ok:
        return console.refused(page, answer)
    return console.render("call.html", page, call=answer.json())


async def audit(console: Console, page: Page) -> Response:
    settings = await console.api(page, "GET", api_path("audit", "settings"))
    if not settings.ok:
        return console.refused(page, settings)
    head = int(settings.json().get("head_seq") or 0)
    raw = page.request.query_params.get("after", "")
    after = int(raw) if raw.isdigit() else max(0, head - AUDIT_ROWS)
    answer = await console.api(page, "GET", api_path("audit"), query={"after": str(after), "limit": str(AUDIT_ROWS)})
    if not answer.ok:
        return console.refused(page, answer)
    entries = list(reversed(answer.json()["data"]))
    verify = None
    if page.request.query_params.get("verify") == "1":
        checked = await console.api(page, "GET", api_path("audit", "verify"))
        if not checked.ok:
            return console.refused(page, checked)
        verify = checked.json()
    older = max(0, after - AUDIT_ROWS) if after > 0 else None
    newer = after + AUDIT_ROWS if after + AUDIT_ROWS < head else None
    return console.render(
        "audit.html", page, entries=entries, verify=verify, after=after, older=older, newer=newer, head=head
    )


async def audit_export(console: Console, page: Page) -> Response:
    fmt = page.request.query_params.get("format", "jsonl")
    answer = await console.api(page, "GET", api_path("audit", "export"), query={"format": fmt})
    if not answer.ok:
        return console.refused(page, answer)
    suffix = {"json": "json", "jsonl": "jsonl", "syslog": "log"}.get(fmt, "txt")
    disposition = f'attachment; filename="agenthub-audit.{suffix}"'
    kind = answer.headers.get("content-type", "application/octet-stream")
    return Response(answer.body, media_type=kind, headers={"content-disposition": disposition})


def routes(console: Console) -> list[Route]:
    return [
        Route(f"{UI_PREFIX}/logs", console.page(list_logs), methods=["GET"]),
        Route(f"{UI_PREFIX}/logs/{{call_id}}", console.page(show_call), methods=["GET"]),
        Route(f"{UI_PREFIX}/audit", console.page(audit), methods=["GET"]),
        Route(f"{UI_PREFIX}/audit/export", console.page(audit_export), methods=["GET"]),
    ]

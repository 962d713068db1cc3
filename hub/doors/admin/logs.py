"""Admin handlers for the request log: `GET /api/v1/logs` (filtered, keyset-paged), `GET /api/v1/logs/{call_id}`
(a call with its tree) and `GET /api/v1/logs/summary` (spend and volume from the daily rollup).

Reading the log needs `logs:read` on every team (the rows of one call tree may belong to several keys, and a row
of a refused call may have no key at all), so a team-limited grant is refused at dispatch. Every query parameter
is checked: an unknown one, or a value that cannot be read, is a 400 that names it, never an empty page. The
queries themselves (`hub.audit.logquery`, `hub.audit.logsummary`) run in a worker thread.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from hub.audit.logquery import FILTER_NAMES, MAX_LIMIT, BadFilter, LogFilter, call_tree, parse_filter, read_page
from hub.audit.logsummary import summarize
from hub.audit.requestlog import ROLLUP_DIMS
from hub.doors.admin.api import PREFIX, Ctx, Op, json_response, off_loop
from hub.errors import BadRequest, NotFound
from hub.governance.rbac import AdminPrincipal

DEFAULT_LIMIT = 50
SUMMARY_DAYS = 30
"""The range of a summary that names no `since`: the last 30 days, today included."""

_LIST_PARAMS = FILTER_NAMES | {"limit", "cursor", "total"}
_SUMMARY_PARAMS = frozenset({"by", "since", "until"})


def _params(ctx: Ctx, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, refusing unknown and repeated ones (a typo must not widen a filter silently)."""
    query = ctx.request.query_params
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    repeated = sorted(k for k in query if len(query.getlist(k)) > 1)
    if repeated:
        raise BadRequest(f"query parameter(s) given more than once: {', '.join(repeated)}")
    return dict(query.items())


def _limit(params: dict[str, str]) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}; got {raw!r}")
    return int(raw)


def _filter(params: dict[str, str]) -> LogFilter:
    try:
        return parse_filter(params, datetime.now(UTC))
    except BadFilter as exc:
        raise BadRequest(str(exc)) from None


async def _key_id(ctx: Ctx, f: LogFilter) -> LogFilter:
    """A `key` filter given as a key's name becomes its id (the column holds ids); an unknown value stays as it
    is (the id of a key deleted since still finds its rows)."""
    if f.key is None:
        return f
    row = await off_loop(ctx.hub.store.get_key, f.key)
    if row is None or row.id == f.key:
        return f
    return replace(f, key=row.id)


async def list_logs(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    params = _params(ctx, _LIST_PARAMS)
    limit, f = _limit(params), _filter(params)
    total = params.get("total", "true")
    if total not in ("true", "false"):
        raise BadRequest(f"total must be true or false; got {total!r}")
    f = await _key_id(ctx, f)
    engine, cursor = ctx.hub.store.engine, params.get("cursor")
    try:
        page = await off_loop(lambda: read_page(engine, f, limit, cursor, total=total == "true"))
    except BadFilter as exc:
        raise BadRequest(str(exc)) from None
    body: dict[str, object] = {"data": page.data, "next_cursor": page.next_cursor}
    if total == "true":
        body["total"] = page.total
        body["total_exact"] = page.total_exact
    return json_response(body)


async def get_log(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    call_id = ctx.params["call_id"]
    if not call_id or len(call_id) > 64:
        raise BadRequest("the path must end with a call id")
    engine = ctx.hub.store.engine
    tree = await off_loop(call_tree, engine, call_id)
    if tree is None:
        raise NotFound(f"no request-log row for call '{call_id}'")
    return json_response(tree)


async def log_summary(ctx: Ctx, who: AdminPrincipal, _body: None) -> Response:
    params = _params(ctx, _SUMMARY_PARAMS)
    by = params.get("by", "day")
    if by not in ROLLUP_DIMS:
        raise BadRequest(f"by must be one of {', '.join(ROLLUP_DIMS)}; got {by!r}")
    now = datetime.now(UTC)
    f = _filter({k: v for k, v in params.items() if k != "by"})
    until = (f.until or now).date()
    since = (f.since or now - timedelta(days=SUMMARY_DAYS - 1)).date()
    if until < since:
        raise BadRequest("until must not be before since")
    engine = ctx.hub.store.engine
    summary = await off_loop(summarize, engine, by, since, until)
    return json_response(
        {"by": by, "since": summary.since.isoformat(), "until": summary.until.isoformat(), "data": summary.data}
    )


_R = PREFIX
OPERATIONS: list[Op] = [
    Op("GET", f"{_R}/logs", "Request-log rows, newest first (filters, ?cursor=, ?limit=)", list_logs, "logs"),
    Op("GET", f"{_R}/logs/summary", "Spend and volume per day, key, team, customer, model or server", log_summary,
       "logs"),
    Op("GET", f"{_R}/logs/{{call_id}}", "One call with its tree of nested calls", get_log, "logs"),
]  # fmt: skip
"""The request-log routes (`summary` before `{call_id}`: the first route that matches a path serves it)."""

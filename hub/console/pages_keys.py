"""The keys pages: list and filter, create (the secret shown once), edit filters, budget and limits, revoke, and
what a key sees (its tools, models and Code Mode files, as the MCP listing and Code Mode compute them)."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hub.call import Principal
from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page

PERIODS = ("1h", "1d", "1w", "1M")
RATE_PERIODS = ("1s", "1m", "1h", "1d")


def _names(text: str) -> list[str]:
    """Globs or names typed one per line or separated by commas."""
    return [part.strip() for part in re.split(r"[\n,]", text) if part.strip()]


def _number(text: str) -> float | int | str:
    """A number typed in a form (the API's message names the field when it is not one)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def key_body(form: dict[str, str], *, create: bool) -> dict[str, Any]:
    """The admin API body for the key form: blank fields are left out when creating and cleared when editing."""
    body: dict[str, Any] = {}
    if create:
        body["name"] = form.get("name", "").strip()
    for field in ("team", "customer", "expires_at"):
        value = form.get(field, "").strip()
        if value or not create:
            body[field] = value or None
    for field in ("tools", "models"):
        names = _names(form.get(field, ""))
        if names or not create:
            body[field] = names
    usd = form.get("budget_usd", "").strip()
    if usd:
        body["budget"] = {"max_usd": _number(usd), "reset": form.get("budget_reset") or "1M"}
    elif not create:
        body["budget"] = None
    requests, tokens = form.get("rate_requests", "").strip(), form.get("rate_tokens", "").strip()
    if requests or tokens:
        limit: dict[str, Any] = {"period": form.get("rate_period") or "1m"}
        if requests:
            limit["requests"] = _number(requests)
        if tokens:
            limit["tokens"] = _number(tokens)
        body["rate_limit"] = limit
    elif not create:
        body["rate_limit"] = None
    body["code_mode"] = form.get("code_mode") == "on"
    return body


def reach(console: Console, key_id: str) -> dict[str, Any] | None:
    """What an active key sees now: its MCP tools as `tools/list` gives them, the models it may use, and the
    Code Mode files behind its meta-tools; None for a revoked or expired key."""
    hub = console.ref.hub
    key = hub.keyring.get(key_id)
    if key is None:
        return None
    principal = Principal(key)
    tools = [str(t.get("name")) for t in hub.listings.listing("tools", principal).get("tools", [])]
    models = sorted(name for name in hub.settings.models if key.grant.allows_model(name))
    files = ""
    catalog = hub.codemode._catalog(principal, hub.view())
    if catalog.servers:
        from sandbox.metatools import list_tool_files

        files = list_tool_files(catalog.catalog)
    return {"tools": tools, "models": models, "files": files, "code_mode": bool(catalog.servers)}


async def list_keys(console: Console, page: Page, created: dict[str, Any] | None = None) -> Response:
    query = page.request.query_params
    revoked = query.get("revoked") == "on"
    answer = await console.api(page, "GET", api_path("keys"), query={"include_revoked": "true"} if revoked else None)
    if not answer.ok:
        return console.refused(page, answer)
    text, team = query.get("q", "").strip().lower(), query.get("team", "").strip()
    rows = [
        k for k in answer.json()["data"]
        if (not text or text in str(k.get("name", "")).lower() or text in str(k.get("prefix", "")).lower())
        and (not team or k.get("team") == team)
    ]  # fmt: skip
    return console.render(
        "keys.html", page, 201 if created else 200, keys=rows, q=query.get("q", ""), team=team, revoked=revoked,
        created=created, periods=PERIODS, rate_periods=RATE_PERIODS,
    )  # fmt: skip


async def create_key(console: Console, page: Page) -> Response:
    answer = await console.api(page, "POST", api_path("keys"), body=key_body(page.form, create=True))
    if not answer.ok:
        return console.refused(page, answer)
    return await list_keys(console, page, created=answer.json())


async def show_key(console: Console, page: Page) -> Response:
    name = page.request.path_params["key"]
    answer = await console.api(page, "GET", api_path("keys", name))
    if not answer.ok:
        return console.refused(page, answer)
    key = answer.json()
    sees = reach(console, str(key["id"])) if not key.get("revoked") else None
    return console.render("key.html", page, key=key, sees=sees, periods=PERIODS, rate_periods=RATE_PERIODS)


async def edit_key(console: Console, page: Page) -> Response:
    name = page.request.path_params["key"]
    answer = await console.api(page, "PATCH", api_path("keys", name), body=key_body(page.form, create=False))
    if not answer.ok:
        return console.refused(page, answer)
    page.flash.append(f"Key '{name}' was changed.")
    return RedirectResponse(f"{UI_PREFIX}/keys/{answer.json()['id']}", status_code=303)


async def revoke_key(console: Console, page: Page) -> Response:
    name = page.request.path_params["key"]
    answer = await console.api(page, "DELETE", api_path("keys", name))
    if not answer.ok:
        return console.refused(page, answer)
    page.flash.append(f"Key '{answer.json()['name']}' was revoked; calls with it are refused from now on.")
    return RedirectResponse(f"{UI_PREFIX}/keys", status_code=303)


def routes(console: Console) -> list[Route]:
    return [
        Route(f"{UI_PREFIX}/keys", console.page(list_keys), methods=["GET"]),
        Route(f"{UI_PREFIX}/keys", console.page(create_key), methods=["POST"]),
        Route(f"{UI_PREFIX}/keys/{{key}}", console.page(show_key), methods=["GET"]),
        Route(f"{UI_PREFIX}/keys/{{key}}", console.page(edit_key), methods=["POST"]),
        Route(f"{UI_PREFIX}/keys/{{key}}/revoke", console.page(revoke_key), methods=["POST"]),
    ]

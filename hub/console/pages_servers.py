"""The MCP servers pages: health, tools with their pinned definitions and any drift awaiting approval (and the
approval), add and remove at run time, and starting an upstream OAuth login."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page


def server_body(form: dict[str, str]) -> dict[str, Any]:
    """The admin API body for the add-a-server form (the API validates it and applies the allow-lists)."""
    transport = form.get("transport", "stdio")
    body: dict[str, Any] = {"name": form.get("name", "").strip(), "transport": transport}
    if transport == "stdio":
        body["command"] = form.get("command", "").strip()
        args = [a.strip() for a in re.split(r"\n", form.get("args", "")) if a.strip()]
        if args:
            body["args"] = args
    else:
        body["url"] = form.get("url", "").strip()
    return body


async def list_servers(console: Console, page: Page) -> Response:
    answer = await console.api(page, "GET", api_path("servers"))
    if not answer.ok:
        return console.refused(page, answer)
    return console.render("servers.html", page, servers=answer.json()["data"])


async def add_server(console: Console, page: Page) -> Response:
    answer = await console.api(page, "POST", api_path("servers"), body=server_body(page.form))
    if not answer.ok:
        return console.refused(page, answer)
    name = str(answer.json()["name"])
    page.flash.append(f"Server '{name}' was added; it connects in the background.")
    return RedirectResponse(f"{UI_PREFIX}/servers/{name}", status_code=303)


def _descriptions(console: Console, name: str) -> dict[str, str]:
    """The current tool descriptions of a server, as its catalog holds them."""
    upstream = console.ref.hub.registry.upstreams.get(name)
    if upstream is None:
        return {}
    return {tool.name: tool.description or "" for tool in upstream.catalog.tools}


async def show_server(console: Console, page: Page) -> Response:
    name = page.request.path_params["name"]
    answer = await console.api(page, "GET", api_path("servers", name))
    if not answer.ok:
        return console.refused(page, answer)
    pins = await console.api(page, "GET", api_path("servers", name, "pins"))
    review = pins.json() if pins.ok else None
    return console.render(
        "server.html", page, server=answer.json(), review=review, descriptions=_descriptions(console, name),
        login=None,
    )  # fmt: skip


async def approve(console: Console, page: Page) -> Response:
    name = page.request.path_params["name"]
    answer = await console.api(page, "POST", api_path("servers", name, "approve"))
    if not answer.ok:
        return console.refused(page, answer)
    page.flash.append(f"The tool definitions of '{name}' are approved.")
    return RedirectResponse(f"{UI_PREFIX}/servers/{name}", status_code=303)


async def remove(console: Console, page: Page) -> Response:
    name = page.request.path_params["name"]
    answer = await console.api(page, "DELETE", api_path("servers", name))
    if not answer.ok:
        return console.refused(page, answer)
    page.flash.append(f"Server '{name}' was removed.")
    return RedirectResponse(f"{UI_PREFIX}/servers", status_code=303)


async def oauth_login(console: Console, page: Page) -> Response:
    name = page.request.path_params["name"]
    subject = page.form.get("subject", "").strip() or None
    answer = await console.api(page, "POST", api_path("servers", name, "auth", "login"), body={"subject": subject})
    if not answer.ok:
        return console.refused(page, answer)
    server = await console.api(page, "GET", api_path("servers", name))
    if not server.ok:
        return console.refused(page, server)
    pins = await console.api(page, "GET", api_path("servers", name, "pins"))
    return console.render(
        "server.html", page, server=server.json(), review=pins.json() if pins.ok else None,
        descriptions=_descriptions(console, name), login=answer.json(),
    )  # fmt: skip


def routes(console: Console) -> list[Route]:
    return [
        Route(f"{UI_PREFIX}/servers", console.page(list_servers), methods=["GET"]),
        Route(f"{UI_PREFIX}/servers", console.page(add_server), methods=["POST"]),
        Route(f"{UI_PREFIX}/servers/{{name}}", console.page(show_server), methods=["GET"]),
        Route(f"{UI_PREFIX}/servers/{{name}}/approve", console.page(approve), methods=["POST"]),
        Route(f"{UI_PREFIX}/servers/{{name}}/remove", console.page(remove), methods=["POST"]),
        Route(f"{UI_PREFIX}/servers/{{name}}/login", console.page(oauth_login), methods=["POST"]),
    ]

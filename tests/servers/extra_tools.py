"""Generated tools with realistic schemas, for tool-list benchmarks (`--extra-tools N`).

Names look like `crm_search_contacts_0007`; each tool's schema comes from one of a few signatures that
resemble real SaaS tools (a search with filters and paging, a record update with a nested object, a
report with enums and dates). Calling one returns its own name and arguments as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

DOMAINS = ["crm", "billing", "tickets", "docs", "calendar", "repo", "hr", "inventory"]
ACTIONS = [("search", "records"), ("update", "record"), ("report", "metrics")]


class Address(BaseModel):
    street: str = Field(description="Street and number")
    city: str
    postal_code: str | None = Field(None, description="Postal or ZIP code")
    country: str = Field("US", description="ISO 3166-1 alpha-2 country code")


def _search(name: str) -> Callable[..., str]:
    def search(
        query: Annotated[str, Field(description="Free-text query; supports quoted phrases")],
        limit: Annotated[int, Field(ge=1, le=200, description="Maximum results to return")] = 20,
        cursor: Annotated[str | None, Field(description="Opaque cursor from a previous page")] = None,
        fields: Annotated[list[str] | None, Field(description="Fields to include in each result")] = None,
        filters: Annotated[dict[str, str] | None, Field(description="Exact-match filters by field")] = None,
    ) -> str:
        return json.dumps({"tool": name, "query": query, "limit": limit, "cursor": cursor})

    return search


def _update(name: str) -> Callable[..., str]:
    def update(
        record_id: Annotated[str, Field(description="Identifier of the record to update")],
        title: Annotated[str | None, Field(max_length=200, description="New title")] = None,
        tags: Annotated[list[str] | None, Field(description="Replace the record's tags")] = None,
        address: Annotated[Address | None, Field(description="Postal address")] = None,
        notify: Annotated[bool, Field(description="Send a notification to watchers")] = False,
    ) -> str:
        return json.dumps({"tool": name, "record_id": record_id, "notify": notify})

    return update


def _report(name: str) -> Callable[..., str]:
    def report(
        metric: Annotated[Literal["count", "sum", "avg", "p95"], Field(description="Aggregation to compute")],
        start_date: Annotated[str, Field(description="Start date, ISO 8601 (YYYY-MM-DD)")],
        end_date: Annotated[str, Field(description="End date, ISO 8601 (YYYY-MM-DD)")],
        group_by: Annotated[list[Literal["day", "week", "team", "owner"]] | None, Field(description="Grouping")] = None,
        timezone: Annotated[str, Field(description="IANA time zone name")] = "UTC",
    ) -> str:
        return json.dumps({"tool": name, "metric": metric, "range": [start_date, end_date]})

    return report


_FACTORIES: dict[str, Callable[[str], Callable[..., Any]]] = {"search": _search, "update": _update, "report": _report}


def extra_tool_name(index: int) -> str:
    """The name of the `index`-th generated tool."""
    domain = DOMAINS[index % len(DOMAINS)]
    verb, noun = ACTIONS[(index // len(DOMAINS)) % len(ACTIONS)]
    return f"{domain}_{verb}_{noun}_{index:04d}"


def register_extra_tools(server: MCPServer, count: int) -> None:
    """Add `count` generated tools to `server`."""
    for index in range(count):
        name = extra_tool_name(index)
        verb = name.split("_")[1]
        domain = name.split("_")[0]
        description = (
            f"{verb.capitalize()} {domain} data. Generated tool #{index} for list benchmarks; "
            "returns its own name and a summary of the arguments as JSON."
        )
        server.add_tool(_FACTORIES[verb](name), name=name, description=description)

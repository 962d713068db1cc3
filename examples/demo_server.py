"""A small demo MCP server: a help-desk ticket tracker kept in memory.

It is the upstream the quickstart puts behind AgentHub, and a quick way to try any MCP client:

    python examples/demo_server.py                    # Streamable HTTP on http://127.0.0.1:9001/mcp
    python examples/demo_server.py --host 127.0.0.1 --port 9001
    python examples/demo_server.py --stdio            # stdio, for clients that launch their servers

What it offers:

- tools `search_tickets`, `get_ticket` and `create_ticket`, which return structured content described by
  an output schema, and `close_ticket`;
- resources `tickets://summary` (counts by status, JSON) and `tickets://ticket/{ticket_id}` (one ticket,
  JSON, a resource template);
- the prompt `triage_ticket(ticket_id)`.

The store starts with a few sample tickets and forgets everything when the process stops.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "in_progress", "closed"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9001
DEFAULT_PATH = "/mcp"


class Ticket(BaseModel):
    """One help-desk ticket."""

    id: str = Field(description="Ticket identifier, e.g. TCK-1001")
    title: str
    description: str
    priority: Priority
    status: Status
    created_at: str = Field(description="Creation time, ISO 8601 in UTC")


class TicketSearchResult(BaseModel):
    """The tickets that matched a search, most recent first."""

    total: int = Field(description="How many tickets matched before the limit was applied")
    tickets: list[Ticket]


class TicketStore:
    """An in-memory ticket store with sequential ids (`TCK-1001`, `TCK-1002`, ...)."""

    def __init__(self) -> None:
        self._tickets: dict[str, Ticket] = {}
        self._numbers = itertools.count(1001)

    def create(self, title: str, description: str, priority: Priority = "normal") -> Ticket:
        """Add a ticket in status `open` and return it."""
        ticket = Ticket(
            id=f"TCK-{next(self._numbers)}",
            title=title,
            description=description,
            priority=priority,
            status="open",
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._tickets[ticket.id] = ticket
        return ticket

    def get(self, ticket_id: str) -> Ticket:
        """The ticket with this id.

        Raises:
            ToolError: when there is no such ticket.
        """
        ticket = self._tickets.get(ticket_id.strip().upper())
        if ticket is None:
            raise ToolError(f"no ticket with id {ticket_id!r}")
        return ticket

    def search(self, query: str = "", status: Status | None = None, limit: int = 10) -> TicketSearchResult:
        """Tickets whose title or description contains every word of `query` (case-insensitive)."""
        words = query.lower().split()
        matches = [
            ticket
            for ticket in reversed(self._tickets.values())
            if (status is None or ticket.status == status)
            and all(word in f"{ticket.title} {ticket.description}".lower() for word in words)
        ]
        return TicketSearchResult(total=len(matches), tickets=matches[:limit])

    def set_status(self, ticket_id: str, status: Status) -> Ticket:
        """Change a ticket's status and return the updated ticket."""
        ticket = self.get(ticket_id).model_copy(update={"status": status})
        self._tickets[ticket.id] = ticket
        return ticket

    def counts(self) -> dict[str, int]:
        """How many tickets are in each status."""
        counts = {"open": 0, "in_progress": 0, "closed": 0}
        for ticket in self._tickets.values():
            counts[ticket.status] += 1
        return counts


def sample_store() -> TicketStore:
    """A store holding a few realistic tickets."""
    store = TicketStore()
    store.create("VPN drops every hour", "Laptop loses the VPN connection about once an hour since Monday.", "high")
    store.create("Printer on floor 3 jams", "The shared printer near the kitchen jams on double-sided jobs.", "low")
    store.create("Reset MFA for new phone", "I replaced my phone and can no longer approve sign-ins.", "urgent")
    store.create("Access to the finance share", "Please grant read access to the finance reports share.")
    store.set_status("TCK-1002", "in_progress")
    return store


def build_server(store: TicketStore | None = None) -> MCPServer:
    """The demo server over `store` (a fresh `sample_store()` by default)."""
    tickets = store if store is not None else sample_store()
    server = MCPServer(
        "agenthub-demo",
        title="AgentHub demo: help-desk tickets",
        version="0.1.0",
        instructions="A help-desk ticket tracker. Search before creating a ticket to avoid duplicates.",
        log_level="WARNING",
    )

    @server.tool(title="Search tickets")
    def search_tickets(
        query: str = Field("", description="Words to look for in the title and description"),
        status: Status | None = Field(None, description="Only tickets in this status"),
        limit: int = Field(10, ge=1, le=50, description="Maximum number of tickets to return"),
    ) -> TicketSearchResult:
        """Search tickets by words in their title or description, most recent first."""
        return tickets.search(query, status, limit)

    @server.tool(title="Get ticket")
    def get_ticket(ticket_id: str = Field(description="Ticket id, e.g. TCK-1001")) -> Ticket:
        """Fetch one ticket by id."""
        return tickets.get(ticket_id)

    @server.tool(title="Create ticket")
    def create_ticket(
        title: str = Field(min_length=3, max_length=120, description="One-line summary"),
        description: str = Field(description="What happened, and what is needed"),
        priority: Priority = Field("normal", description="How urgent the ticket is"),
    ) -> Ticket:
        """Open a new ticket and return it."""
        return tickets.create(title, description, priority)

    @server.tool(title="Close ticket")
    def close_ticket(ticket_id: str = Field(description="Ticket id, e.g. TCK-1001")) -> str:
        """Mark a ticket as closed."""
        ticket = tickets.set_status(ticket_id, "closed")
        return f"{ticket.id} is closed"

    @server.resource(
        "tickets://summary", name="summary", description="Ticket counts by status.", mime_type="application/json"
    )
    def summary() -> str:
        return json.dumps(tickets.counts())

    @server.resource(
        "tickets://ticket/{ticket_id}", name="ticket", description="One ticket as JSON.", mime_type="application/json"
    )
    def ticket_resource(ticket_id: str) -> str:
        return tickets.get(ticket_id).model_dump_json()

    @server.prompt(title="Triage a ticket")
    def triage_ticket(ticket_id: str) -> str:
        """Ask the model to triage one ticket: priority, owner team and next step."""
        ticket = tickets.get(ticket_id)
        return (
            f"Triage help-desk ticket {ticket.id} ({ticket.priority} priority, {ticket.status}).\n"
            f"Title: {ticket.title}\nDescription: {ticket.description}\n\n"
            "Say whether the priority is right, which team should own it, and the next step."
        )

    return server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of the demo server."""
    parser = argparse.ArgumentParser(prog="demo_server.py", description="AgentHub's demo MCP server (tickets).")
    parser.add_argument("--stdio", action="store_true", help="serve over stdio instead of Streamable HTTP")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"HTTP bind address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--path", default=DEFAULT_PATH, help=f"HTTP path of the endpoint (default {DEFAULT_PATH})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: `python examples/demo_server.py [--stdio | --host H --port P]`."""
    args = parse_args(argv)
    server = build_server()
    if args.stdio:
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port, streamable_http_path=args.path)


if __name__ == "__main__":
    main()

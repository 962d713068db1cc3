"""General-purpose upstream MCP server for AgentHub's tests.

Run it over any transport (see `tests/servers/_common.py`):

    python tests/servers/fixture_server.py [--transport stdio|sse|streamable-http] [--port N]
                                           [--name NAME] [--extra-tools N] [--header-tools]

Tools:
    echo(message)              returns the message as text
    add(a, b)                  returns a + b (structured output `{"result": n}`)
    slow(seconds, steps=4)     sleeps `seconds` in `steps` parts, with a progress notification after each
    fail(reason)               always ends with `isError: true` and the reason as text
    rich_content(city)         image + embedded resource + structured content, with an outputSchema
    ask_llm(prompt)            asks the client's model (`sampling/createMessage`) and returns its text
    ask_user(question)         asks the client's user (`elicitation/create`) for a name
    add_tool(name)             registers a new echo-like tool and sends `notifications/tools/list_changed`
    set_description(tool, description)
                               changes the description of `echo` or `add` and sends `tools/list_changed`
    whoami()                   returns the HTTP headers the server saw (lower-cased), as JSON
    touch_resource(uri)        reports the resource changed: `notifications/resources/updated` to the sessions
                               subscribed with `resources/subscribe`, and to `subscriptions/listen` streams
Resources: `fixture://readme` (text), `fixture://logo.png` (binary), template `fixture://items/{item_id}`;
`resources/subscribe` and `resources/unsubscribe` are served.
Prompts: `greeting(name)`, `review_code(code, language="python")`.
Completion: the `language` argument of `review_code`.
`--extra-tools N` adds N generated tools with realistic schemas (for list benchmarks); `--header-tools` adds
`regional` and `misplaced_header`, whose inputs carry 2026-07-28 `x-mcp-header` annotations (one valid, one not).
"""

from __future__ import annotations

import base64
import json
import sys
import weakref
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server import Server
from mcp.server.connection import Connection
from mcp.server.mcpserver import Context, MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import AcceptedElicitation, Elicit, ElicitationResult
from mcp_types import (
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

if __package__ in (None, ""):  # run as a script: make `tests.servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.servers._common import advertise_list_changed, serve, transport_parser
from tests.servers.extra_tools import register_extra_tools

# A 1x1 red PNG.
RED_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
LANGUAGES = ["python", "javascript", "typescript", "go", "rust", "java", "ruby"]


class Forecast(BaseModel):
    """The structured part of `rich_content`."""

    city: str
    temperature_c: float = Field(description="Temperature in degrees Celsius")
    conditions: str


class Name(BaseModel):
    """What `ask_user` asks for."""

    name: str = Field(description="Your name")


def _sample_prompt(prompt: str) -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100)


def _ask_name(question: str) -> Elicit[Name]:
    return Elicit(question, Name)


def _serve_subscriptions(server: MCPServer) -> dict[str, weakref.WeakSet[Connection]]:
    """Serve handshake-era `resources/(un)subscribe` (which `MCPServer` does not serve by itself); returns the
    subscribed client connections by URI."""
    subscribed: dict[str, weakref.WeakSet[Connection]] = {}

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        subscribed.setdefault(str(params.uri), weakref.WeakSet()).add(ctx.session._connection)
        return EmptyResult()

    async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        subscribed.get(str(params.uri), weakref.WeakSet()).discard(ctx.session._connection)
        return EmptyResult()

    lowlevel: Server[Any] = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    return subscribed


def build_server(
    name: str = "fixture", extra_tools: int = 0, header_tools: bool = False, note: str | None = None
) -> MCPServer:
    """Build the fixture server (not yet running); `note` adds a tool, a prompt and a resource described by it."""
    server = MCPServer(name, version="1.0.0", instructions="AgentHub test fixture.", log_level="WARNING")
    advertise_list_changed(server)

    @server.tool()
    def echo(message: str) -> str:
        """Return the message unchanged."""
        return message

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow(seconds: float, ctx: Context, steps: int = 4) -> str:
        """Sleep for `seconds`, reporting progress after each of `steps` equal parts."""
        for step in range(1, steps + 1):
            await anyio.sleep(seconds / steps)
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        return f"slept {seconds:g}s"

    @server.tool()
    def fail(reason: str = "this tool always fails") -> str:
        """Always fail with `isError: true`."""
        raise ToolError(reason)

    @server.tool()
    def rich_content(city: str = "Paris") -> Annotated[CallToolResult, Forecast]:
        """Return an image, an embedded resource and structured content (with an outputSchema)."""
        forecast = Forecast(city=city, temperature_c=21.5, conditions="sunny")
        return CallToolResult(
            content=[
                TextContent(type="text", text=forecast.model_dump_json()),
                ImageContent(type="image", data=base64.b64encode(RED_PIXEL_PNG).decode(), mime_type="image/png"),
                EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(
                        uri=f"fixture://forecast/{city}", mime_type="text/plain", text=f"{city}: sunny, 21.5 C"
                    ),
                ),
            ],
            structured_content=forecast.model_dump(),
        )

    @server.tool()
    def ask_llm(prompt: str, reply: Annotated[CreateMessageResult, Resolve(_sample_prompt)]) -> str:
        """Ask the client's model to answer `prompt` (sampling) and return its text."""
        content = reply.content
        text = content.text if isinstance(content, TextContent) else f"<{content.type}>"
        return f"LLM said: {text}"

    @server.tool()
    def ask_user(question: str, answer: Annotated[ElicitationResult[Name], Resolve(_ask_name)]) -> str:
        """Ask the client's user for a name (elicitation) and return what happened."""
        if isinstance(answer, AcceptedElicitation):
            return f"Hello, {answer.data.name}!"
        return f"user chose {answer.action}"

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Register a new tool `name` that echoes its input, and notify clients that the tool list changed."""

        def added(message: str) -> str:
            return f"{name}: {message}"

        server.add_tool(added, name=name, description=f"Echo tool {name!r} added at run time.")
        if ctx.protocol_version and ctx.protocol_version >= "2026-07-28":
            await ctx.notify_tools_changed()
        else:
            await ctx.session.send_tool_list_changed()
        return f"added {name}"

    @server.tool()
    async def set_description(tool: str, description: str, ctx: Context) -> str:
        """Change the description of `echo` or `add` (same behaviour, new definition) and notify the clients."""
        functions = {"echo": echo, "add": add}
        if tool not in functions:
            raise ToolError(f"only {sorted(functions)} can be changed")
        server.remove_tool(tool)
        server.add_tool(functions[tool], name=tool, description=description)
        if ctx.protocol_version and ctx.protocol_version >= "2026-07-28":
            await ctx.notify_tools_changed()
        else:
            await ctx.session.send_tool_list_changed()
        return f"changed {tool}"

    @server.tool()
    def whoami(ctx: Context) -> str:
        """Return the request's HTTP headers as JSON (empty on stdio)."""
        headers = dict(ctx.headers or {})
        return json.dumps({k.lower(): v for k, v in headers.items()}, sort_keys=True)

    subscribed = _serve_subscriptions(server)

    @server.tool()
    async def touch_resource(uri: str, ctx: Context) -> str:
        """Report that a resource changed."""
        await ctx.notify_resource_updated(uri)
        connections = list(subscribed.get(uri, ()))
        for connection in connections:
            await connection.outbound.notify("notifications/resources/updated", {"uri": uri})
        return f"notified {len(connections)} subscriber(s)"

    @server.resource("fixture://readme", name="readme", description="A short text file.", mime_type="text/plain")
    def readme() -> str:
        return "This is the fixture server's readme."

    @server.resource("fixture://logo.png", name="logo", description="A 1x1 PNG.", mime_type="image/png")
    def logo() -> bytes:
        return RED_PIXEL_PNG

    @server.resource(
        "fixture://items/{item_id}", name="item", description="One item by id.", mime_type="application/json"
    )
    def item(item_id: str) -> str:
        return json.dumps({"id": item_id, "name": f"Item {item_id}"})

    @server.prompt()
    def greeting(name: str) -> str:
        """Greet someone by name."""
        return f"Say hello to {name}."

    @server.prompt()
    def review_code(code: str, language: str = "python") -> str:
        """Ask for a review of a code snippet."""
        return f"Review this {language} code:\n\n{code}"

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "review_code" and argument.name == "language":
            values = [lang for lang in LANGUAGES if lang.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        if isinstance(ref, PromptReference) and ref.name == "note" and argument.name == "topic":
            return Completion(values=[f"{argument.value} notes"], total=1, has_more=False)
        return None

    register_extra_tools(server, extra_tools)
    if header_tools:
        _register_header_tools(server)
    if note is not None:
        _register_note(server, note)
    return server


def _register_note(server: MCPServer, note: str) -> None:
    """A tool `note`, a prompt `note` and a resource `fixture://note`, each described by `note` (so listings carry
    text chosen by the test), and completion of the prompt's `topic` that echoes the value typed so far."""

    def note_tool(topic: str) -> str:
        return f"note about {topic}"

    server.add_tool(note_tool, name="note", description=note)

    @server.prompt(name="note", description=note)
    def note_prompt(topic: str) -> str:
        return f"Write a note about {topic}."

    @server.resource("fixture://note", name="note", description=note, mime_type="text/plain")
    def note_resource() -> str:
        return note


def _register_header_tools(server: MCPServer) -> None:
    """Two tools with 2026-07-28 `x-mcp-header` annotations: a valid one that reports the headers it was called with,
    and one whose annotation sits on an object property, which clients must drop from the listing."""

    @server.tool()
    def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], ctx: Context) -> str:
        """Return the request's HTTP headers as JSON; `region` is mirrored into the `Mcp-Param-Region` header."""
        headers = dict(ctx.headers or {})
        return json.dumps({k.lower(): v for k, v in headers.items()}, sort_keys=True)

    @server.tool()
    def misplaced_header(filters: dict[str, str]) -> str:
        """A tool whose header annotation is invalid (on an object property)."""
        return json.dumps(filters)

    # The SDK refuses such a tool at registration, so the annotation is added to the registered schema: this
    # server misbehaves on purpose.
    registered = server._tool_manager.get_tool("misplaced_header")
    assert registered is not None
    registered.parameters["properties"]["filters"]["x-mcp-header"] = "Filters"


def main(argv: list[str] | None = None) -> None:
    parser = transport_parser(__doc__.splitlines()[0] if __doc__ else "fixture server")
    parser.add_argument("--name", default="fixture", help="server name reported in serverInfo")
    parser.add_argument("--extra-tools", type=int, default=0, help="add N generated tools")
    parser.add_argument("--header-tools", action="store_true", help="add two tools with x-mcp-header annotations")
    parser.add_argument("--note", help="add a tool, a prompt and a resource named `note` with this description")
    args = parser.parse_args(argv)
    serve(build_server(args.name, args.extra_tools, args.header_tools, args.note), args)


if __name__ == "__main__":
    main()

"""`agenthub stdio`: MCP on stdin/stdout, for clients that launch a command (Claude Desktop).

- `--url URL`: the bridge to a running hub (`hub.doors.stdio.serve_bridge`). `hub.cli.launch` sends `agenthub stdio`
  straight here, before the rest of the command line is imported, and this module imports nothing of the hub at
  the top: the bridge must answer `initialize` within a client's connect timeout (see `hub.doors.stdio`).
- `--config FILE`: a hub in this process serving its MCP door on stdin/stdout (`serve_embedded`); it goes through
  the whole command line (`hub.cli.main`), which loads the configuration.
- `--server NAME`: one endpoint instead of the aggregated one, as `/mcp/NAME` serves it: an upstream server's own
  (`--server github`) or a virtual server's (`--server v/NAME`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.app import Hub
    from hub.doors.mcp import McpDoor
    from hub.settings import Settings

KEY_ENV = "AGENTHUB_KEY"
CONNECT_TIMEOUT_S = 30.0
"""How long the bridge tries to reach the hub before it gives up (a hub may still be starting)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `agenthub stdio` besides `--config`."""
    parser.add_argument("--url", help="bridge to a running hub's /mcp instead of embedding one")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"with --url: how long to try reaching the hub before giving up (default {CONNECT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--server",
        metavar="NAME",
        help="serve one endpoint, as /mcp/NAME does: an upstream server's, or a virtual server's as v/NAME",
    )


def endpoint_url(url: str, server: str | None) -> str:
    """The URL of the endpoint `--server` names under the hub's `/mcp` URL `url`."""
    return f"{url.rstrip('/')}/{server.strip('/')}" if server else url


def main(argv: list[str]) -> int | None:
    """`agenthub stdio ARGS` when ARGS ask for the bridge: its exit status. None for anything else (the embedded
    hub, `--help`, a mistake in the arguments), which the whole command line (`hub.cli.main`) handles: the caller
    passes it on, so this module never imports the command line that imports it."""
    parser = argparse.ArgumentParser(prog="agenthub stdio", add_help=False)
    add_arguments(parser)
    parser.add_argument("--config")
    args, rest = parser.parse_known_args(argv)
    if args.url is None or rest:
        return None
    logging.basicConfig(
        level=os.environ.get("AGENTHUB_LOG_LEVEL", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_bridge(endpoint_url(args.url, args.server), args.connect_timeout)


def run_bridge(url: str, connect_timeout_s: float) -> int:
    """Run the bridge to `url` with the key in `AGENTHUB_KEY` until the client closes stdin; 2 for arguments that
    cannot work.

    Raises:
        SystemExit: the hub refused the key or could not be reached (exit status 1, the message on stderr).
    """
    if not url.lower().startswith(("http://", "https://")):
        sys.stderr.write(f"agenthub stdio: --url must be the http:// or https:// URL of a hub's /mcp, not {url!r}\n")
        return 2
    if not connect_timeout_s > 0:
        sys.stderr.write("agenthub stdio: --connect-timeout must be a positive number of seconds\n")
        return 2
    import anyio

    from hub.doors.stdio import serve_bridge

    try:
        anyio.run(serve_bridge, url, os.environ.get(KEY_ENV), connect_timeout_s)
    except KeyboardInterrupt:
        return 130
    return 0


async def serve_embedded(settings: Settings, key_env: str = KEY_ENV, server: str | None = None) -> None:
    """Serve the aggregated MCP endpoint (or `server`'s, as `--server` names it) on stdin/stdout from an in-process
    hub; the caller's key is the one in `key_env`, checked with every request (a key revoked meanwhile is refused
    from its next request on).

    Raises:
        SystemExit: the key is missing or not a key of this hub (the refusal is recorded first, like any other).
    """
    from mcp.server.stdio import stdio_server

    from hub.app import open_hub

    hub = open_hub(settings)
    refused: str | None = None
    async with hub.running():
        credential = os.environ.get(key_env)
        if hub.authenticate(credential) is None:
            refused = f"{await _refuse(hub, credential)} ({key_env} holds no valid virtual key of this hub)"
        elif server is not None and _endpoint(hub, server) is None:
            refused = f"no MCP server named '{server[:64]}' (--server)"
        else:
            door = _endpoint(hub, server, lambda: os.environ.get(key_env))
            assert door is not None
            if server is None:
                hub.mcp = door
            async with stdio_server() as (read, write):
                await door.server.run(read, write, door.initialization_options())
    hub.store.close()
    if refused is not None:
        raise SystemExit(f"agenthub stdio: {refused}")


def _endpoint(hub: Hub, server: str | None, credential: Callable[[], str | None] | None = None) -> McpDoor | None:
    """The door `--server` names (None when there is no such server), or the aggregated one."""
    from hub.doors.mcp_virtual import PREFIX

    if server is None:
        return hub.new_door(credential=credential)
    if server.startswith(PREFIX):
        name = server[len(PREFIX) :]
        return hub.new_virtual_door(name, credential) if hub.virtual.get(name) is not None else None
    return hub.new_door(server, credential) if server in hub.registry.upstreams else None


async def _refuse(hub: Hub, credential: str | None) -> str:
    """Run the connection's refusal through the pipeline (one request-log row); its message."""
    from hub.call import Call, Malformed
    from hub.errors import HubError, Unauthenticated
    from hub.stages.authn import NO_KEY

    call = Call(
        door="mcp",
        operation="mcp.session",
        target="stdio",
        payload=Malformed(Unauthenticated(NO_KEY)),
        credential=credential,
    )
    assert hub.pipeline is not None and hub.request_log is not None
    try:
        await hub.pipeline(call)
    except HubError as exc:
        await hub.request_log.flush()
        return exc.message
    return NO_KEY

"""`agenthub stdio --config FILE`: a hub in this process serving its MCP door on stdin/stdout (Claude Desktop
launches it as a command). The bridge to a running hub (`--url`) is `hub.doors.stdio.serve_bridge`."""

from __future__ import annotations

import os

from mcp.server.stdio import stdio_server

from hub.app import Hub, open_hub
from hub.call import Call, Malformed
from hub.errors import HubError, Unauthenticated
from hub.settings import Settings
from hub.stages.authn import NO_KEY


async def serve_embedded(settings: Settings, key_env: str = "AGENTHUB_KEY") -> None:
    """Serve the aggregated MCP endpoint on stdin/stdout from an in-process hub; the caller's key is the one in
    `key_env`, checked with every request (a key revoked meanwhile is refused from its next request on).

    Raises:
        SystemExit: the key is missing or not a key of this hub (the refusal is recorded first, like any other).
    """
    hub = open_hub(settings)
    refused: str | None = None
    async with hub.running():
        credential = os.environ.get(key_env)
        if hub.authenticate(credential) is None:
            refused = await _refuse(hub, credential)
        else:
            hub.mcp = door = hub.new_door(credential=lambda: os.environ.get(key_env))
            async with stdio_server() as (read, write):
                await door.server.run(read, write, door.initialization_options())
    hub.store.close()
    if refused is not None:
        raise SystemExit(f"agenthub stdio: {refused} ({key_env} holds no valid virtual key of this hub)")


async def _refuse(hub: Hub, credential: str | None) -> str:
    """Run the connection's refusal through the pipeline (one request-log row); its message."""
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

"""Code Mode on the MCP door: four meta-tools instead of a long tool list, programs run in the sandbox.

For a key with `code_mode = true`, or for the tools of servers configured with `code_mode = true`, the plain tool
list carries `list_tool_files`, `read_tool_file`, `get_tool_docs` and `execute_tool_code` instead of those tools.
The three reading tools are answered from a per-(key, registry version) catalog. `execute_tool_code` is a
governed `code.run` call; inside it every tool call the program makes re-enters the pipeline as an `mcp.tool`
call with the same principal and the run's call id as parent, so filters, limits, guardrails and the request log
apply per call. The sandbox pool starts on first use and lives until the hub stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import orjson

from connectors.registry import Entry, RegistryView
from hub.call import Call, Outcome, Principal
from hub.errors import BadRequest, HubError, UpstreamFailed
from hub.governance.keys import VirtualKey
from hub.pipeline import Handler

if TYPE_CHECKING:
    from sandbox import SandboxLimits, SandboxPool, ToolCatalog

logger = logging.getLogger(__name__)

EXECUTE = "execute_tool_code"
META_NAMES = frozenset({"list_tool_files", "read_tool_file", "get_tool_docs", EXECUTE})
"""The names of `sandbox.META_TOOLS` (the sandbox package loads with the first key that has Code Mode tools)."""


@dataclass
class _KeyCatalog:
    servers: dict[str, list[Mapping[str, Any]]]
    names: dict[tuple[str, str], str]
    definitions: list[dict[str, Any]]
    _catalog: ToolCatalog | None = None

    @property
    def catalog(self) -> ToolCatalog:
        if self._catalog is None:
            from sandbox import ToolCatalog

            names = self.names
            self._catalog = ToolCatalog.from_mcp(self.servers, call_name=lambda server, tool: names[(server, tool)])
        return self._catalog


class CodeMode:
    """Decides which tools go behind the meta-tools for a key, answers the meta-tools, and runs programs."""

    def __init__(self, code_mode_servers: Callable[[], frozenset[str]], *, pool_size: int = 2) -> None:
        self._servers = code_mode_servers
        self._pool_size = pool_size
        self._pool: SandboxPool | None = None
        self._pool_lock = anyio.Lock()
        self._catalogs: dict[tuple[str, int, tuple[str, ...], bool, str | None], _KeyCatalog] = {}
        self.pipeline: Handler | None = None
        self.task_group: anyio.abc.TaskGroup | None = None

    # -- which tools -----------------------------------------------------------------------------------------------

    def hides(self, key: VirtualKey, entry: Entry) -> bool:
        """Whether a tool is reached through the meta-tools for this key (instead of the plain list)."""
        return key.code_mode or entry.server in self._servers()

    def _catalog(self, key: VirtualKey, view: RegistryView, scope: str | None = None) -> _KeyCatalog:
        """The key's Code Mode tools; `scope` keeps one server's (the `/mcp/{server}` endpoint)."""
        cache_key = (key.id, view.version, key.tools, key.code_mode, scope)
        found = self._catalogs.get(cache_key)
        if found is None:
            servers: dict[str, list[Mapping[str, Any]]] = {}
            names: dict[tuple[str, str], str] = {}
            for entry in sorted(view.tools.values(), key=lambda e: e.exposed):
                if scope is not None and entry.server != scope:
                    continue
                if key.allows_tool(entry.exposed) and self.hides(key, entry):
                    tool = entry.definition.model_dump(by_alias=True, mode="json", exclude_none=True)
                    tool["name"] = entry.original
                    servers.setdefault(entry.server, []).append(tool)
                    names[(entry.server, entry.original)] = entry.exposed
            found = _KeyCatalog(servers, names, [])
            if servers:
                from sandbox.metatools import meta_tool_definitions

                found.definitions = meta_tool_definitions(found.catalog)
            if len(self._catalogs) > 1024:
                self._catalogs.clear()
            self._catalogs[cache_key] = found
        return found

    def meta_tools(self, key: VirtualKey, view: RegistryView, scope: str | None = None) -> list[dict[str, Any]]:
        """The meta-tool definitions for this key (none when no tool of the key is in Code Mode).

        `scope` is the server of a single-server endpoint (`/mcp/{server}`): only its tools count there.
        """
        return self._catalog(key, view, scope).definitions

    def handles(self, key: VirtualKey, view: RegistryView, name: str, scope: str | None = None) -> bool:
        """Whether `name` is a meta-tool this key has (on the endpoint of `scope`)."""
        return name in META_NAMES and bool(self._catalog(key, view, scope).definitions)

    # -- meta-tools ------------------------------------------------------------------------------------------------

    async def call(
        self,
        principal: Principal,
        view: RegistryView,
        name: str,
        arguments: dict[str, Any],
        scope: str | None = None,
    ) -> Any:
        """Answer one meta-tool call as an MCP tool result (a wire dict); `scope` as for `meta_tools`."""
        from sandbox.metatools import MetaToolError, get_tool_docs, list_tool_files, read_tool_file

        entry = self._catalog(principal.key, view, scope)
        try:
            if name == "list_tool_files":
                return _text(list_tool_files(entry.catalog))
            if name == "read_tool_file":
                path = _arg(arguments, "path", str)
                start = arguments.get("start_line")
                end = arguments.get("end_line")
                return _text(read_tool_file(entry.catalog, path, _opt_int(start), _opt_int(end)))
            if name == "get_tool_docs":
                return _text(get_tool_docs(entry.catalog, _arg(arguments, "server", str), _arg(arguments, "tool", str)))
        except MetaToolError as exc:
            return _text(str(exc), error=True)
        code = _arg(arguments, "code", str)
        if self.pipeline is None:
            raise UpstreamFailed("Code Mode is not running")
        outcome = await self.pipeline(
            Call(
                door="code",
                operation="code.run",
                target=EXECUTE,
                payload={"code": code},
                principal=principal,
                context={"scope": scope} if scope is not None else {},
            )
        )
        return outcome.value

    # -- runs ------------------------------------------------------------------------------------------------------

    async def pool(self) -> SandboxPool:
        """The worker pool, started on first use in the hub's task group (which also stops it)."""
        async with self._pool_lock:
            if self._pool is None:
                if self.task_group is None:
                    raise UpstreamFailed("Code Mode is not running")
                await self.task_group.start(self._own_pool)
            assert self._pool is not None
            return self._pool

    async def _own_pool(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The hub stops by cancelling its task group. Closing the pool under that cancellation would stop at its
        # first checkpoint, leaving the pool's own task group open and its workers running. So the pool lives in a
        # shielded scope and a watcher task, which the hub's cancellation does reach, tells it to close.
        from sandbox.pool import SandboxPool  # loaded with the first program

        assert self.task_group is not None
        stop = anyio.Event()
        with anyio.CancelScope(shield=True):
            async with SandboxPool(size=self._pool_size) as pool:
                self.task_group.start_soon(_set_when_cancelled, stop)
                self._pool = pool
                task_status.started()
                try:
                    await stop.wait()
                finally:
                    self._pool = None

    async def execute(self, call: Call, view: RegistryView) -> Outcome:
        """The executor for `code.run`: run the program; its tool calls re-enter the pipeline."""
        if call.principal is None or self.pipeline is None:
            raise UpstreamFailed("Code Mode is not running")
        pipeline = self.pipeline
        principal = call.principal
        code = call.payload.get("code") if isinstance(call.payload, dict) else None
        if not isinstance(code, str) or not code.strip():
            raise BadRequest("execute_tool_code needs a non-empty 'code' string")
        scope: str | None = call.context.get("scope")
        catalog = self._catalog(principal.key, view, scope).catalog

        from sandbox import ToolCallError
        from sandbox.metatools import render_result

        async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
            if scope is not None and catalog.resolve(name) is None and _server_of(view, name) != scope:
                # A single-server endpoint reaches that server's tools only, also through `tools.call`.
                raise ToolCallError(f"unknown tool: {name}")
            inner = Call(
                door="code",
                operation="mcp.tool",
                target=name,
                payload=arguments,
                principal=principal,
                parent_id=call.call_id,
            )
            try:
                outcome = await pipeline(inner)
            except HubError as exc:
                raise ToolCallError(exc.message) from None
            result: dict[str, Any] = outcome.value
            if result.get("isError"):
                raise ToolCallError(_result_text(result) or "the tool reported an error")
            if result.get("structuredContent") is not None:
                return result["structuredContent"]
            text = _result_text(result)
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                return text

        pool = await self.pool()
        result = await pool.run(code, tool_caller, catalog=catalog, limits=self._limits(principal.key))
        error = getattr(result, "status", "ok") != "ok"
        return Outcome(_text(render_result(result), error=error), tool_error=error)

    @staticmethod
    def _limits(key: VirtualKey) -> SandboxLimits | None:
        if not key.code_limits:
            return None
        from sandbox import SandboxLimits

        fields: dict[str, Any] = dict(key.code_limits)
        return SandboxLimits(**fields)

    def auto_approved(
        self,
        key: VirtualKey,
        view: RegistryView,
        code: str,
        approved: Callable[[str], bool],
        scope: str | None = None,
    ) -> bool:
        """Whether a program may run without asking: every tool it can call is approved (decided with `ast`).

        False when the set cannot be determined (a computed tool name, a server object passed around, ...) or names
        a tool outside the key's Code Mode catalog.
        """
        from sandbox import tools_used

        usage = tools_used(code, self._catalog(key, view, scope).catalog)
        return bool(usage.determined) and all(approved(name) for name in usage.tools)


def with_code_mode(inner: Handler, codemode: CodeMode, view: Callable[[], RegistryView]) -> Handler:
    """An executor that runs `code.run` calls in the sandbox and hands everything else to `inner`."""

    async def execute(call: Call) -> Outcome:
        if call.operation == "code.run":
            return await codemode.execute(call, view())
        return await inner(call)

    return execute


async def _set_when_cancelled(event: anyio.Event) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        event.set()


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["isError"] = True
    return result


def _server_of(view: RegistryView, name: str) -> str | None:
    entry = view.tools.get(name)
    return entry.server if entry is not None else None


def _result_text(result: Mapping[str, Any]) -> str:
    blocks = result.get("content") or []
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def _arg(arguments: Mapping[str, Any], name: str, kind: type[str]) -> str:
    value = arguments.get(name)
    if not isinstance(value, kind):
        raise BadRequest(f"'{name}' must be a string")
    return value


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("line numbers must be integers")
    return value

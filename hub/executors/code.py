"""Code Mode: four meta-tools instead of a long tool list, programs run in the sandbox.

For a key with `code_mode = true`, or for the tools of servers configured with `code_mode = true`, the plain tool
list carries `list_tool_files`, `read_tool_file`, `get_tool_docs` and `execute_tool_code` instead of those tools.
The three reading tools are `code.read` calls, answered from a per-(key, registry version) catalog;
`execute_tool_code` is a `code.run` call. Inside a run, every tool call the program makes re-enters the pipeline
as an `mcp.tool` call with the same principal and the run's call id as parent, so grants, limits, guardrails and
the request log apply per call.

The sandbox pool starts in the background (`prepare`): at hub start-up when a key or a server has Code Mode, else
with the first program, and lives until the hub stops. A first start builds the guest (a minute or more); a program
that arrives meanwhile waits for it within its `total_timeout`. A sandbox that cannot start is reported once in the
log and to every program as `UpstreamFailed("Code Mode is unavailable: <cause>")`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import orjson

from connectors.registry import Entry, RegistryView
from hub.call import Call, Outcome, Principal
from hub.errors import BadRequest, HubError, UpstreamFailed, UpstreamTimedOut
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
    """Decides which tools go behind the meta-tools for a key, answers the reading tools (`code.read`) and runs
    programs (`code.run`)."""

    def __init__(self, code_mode_servers: Callable[[], frozenset[str]], *, pool_size: int = 2) -> None:
        self._servers = code_mode_servers
        self._pool_size = pool_size
        self._pool: SandboxPool | None = None
        self._starting = False
        self._settled = anyio.Event()
        """Set once the pool is up, or known not to come up (`_failure`)."""
        self._stop = anyio.Event()
        """Set when the hub stops: the pool closes (see `stop`)."""
        self._failure: str | None = None
        self._catalogs: dict[tuple[Any, ...], _KeyCatalog] = {}
        self.pipeline: Handler | None = None
        self.task_group: anyio.abc.TaskGroup | None = None
        self.waiting = 0
        """Programs waiting for the sandbox to start (for monitoring and tests)."""

    # -- which tools -----------------------------------------------------------------------------------------------

    def hides(self, key: VirtualKey, entry: Entry) -> bool:
        """Whether a tool is reached through the meta-tools for this key (instead of the plain list)."""
        return key.code_mode or entry.server in self._servers()

    def _catalog(self, principal: Principal, view: RegistryView, scope: str | None = None) -> _KeyCatalog:
        """The principal's Code Mode tools; `scope` keeps one server's (the `/mcp/{server}` endpoint)."""
        key = principal.key
        cache_key = (key.id, view.version, key.tools, key.code_mode, scope, principal.narrowing)
        found = self._catalogs.get(cache_key)
        if found is None:
            servers: dict[str, list[Mapping[str, Any]]] = {}
            names: dict[tuple[str, str], str] = {}
            grant = principal.grant
            for entry in sorted(view.tools.values(), key=lambda e: e.exposed):
                if grant.allows(entry, scope) and self.hides(key, entry):
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

    def meta_tools(self, principal: Principal, view: RegistryView, scope: str | None = None) -> list[dict[str, Any]]:
        """The meta-tool definitions for this principal (none when none of its tools is in Code Mode).

        `scope` is the server of a single-server endpoint (`/mcp/{server}`): only its tools count there.
        """
        return self._catalog(principal, view, scope).definitions

    def offers(self, principal: Principal, view: RegistryView, scope: str | None = None) -> bool:
        """Whether this principal has Code Mode tools (and so the meta-tools) on the endpoint of `scope`."""
        return bool(self._catalog(principal, view, scope).definitions)

    def handles(self, principal: Principal, view: RegistryView, name: str, scope: str | None = None) -> bool:
        """Whether `name` is a meta-tool this principal has (on the endpoint of `scope`)."""
        return name in META_NAMES and self.offers(principal, view, scope)

    # -- reading tools ---------------------------------------------------------------------------------------------

    async def read(self, call: Call, view: RegistryView) -> Outcome:
        """The executor for `code.read`: `list_tool_files`, `read_tool_file` or `get_tool_docs`, as a tool result."""
        from sandbox.metatools import MetaToolError, get_tool_docs, list_tool_files, read_tool_file

        assert call.principal is not None
        catalog = self._catalog(call.principal, view, call.scope).catalog
        arguments: Mapping[str, Any] = call.payload if isinstance(call.payload, dict) else {}
        name = call.target
        try:
            if name == "list_tool_files":
                text = list_tool_files(catalog)
            elif name == "read_tool_file":
                start, end = _opt_int(arguments.get("start_line")), _opt_int(arguments.get("end_line"))
                text = read_tool_file(catalog, _arg(arguments, "path", str), start, end)
            elif name == "get_tool_docs":
                text = get_tool_docs(catalog, _arg(arguments, "server", str), _arg(arguments, "tool", str))
            else:
                raise BadRequest(f"unknown tool: {name[:64]}")
        except MetaToolError as exc:
            return Outcome(_text(str(exc), error=True), tool_error=True)
        return Outcome(_text(text))

    # -- runs ------------------------------------------------------------------------------------------------------

    @property
    def state(self) -> Literal["idle", "starting", "ready", "unavailable"]:
        """Where the sandbox is: not asked for yet, starting (building its guest), serving, or unable to start."""
        if self._failure is not None:
            return "unavailable"
        if self._pool is not None:
            return "ready"
        return "starting" if self._starting else "idle"

    @property
    def running_pool(self) -> SandboxPool | None:
        """The worker pool once it is up, else None (for monitoring: it never starts one)."""
        return self._pool

    def prepare(self) -> None:
        """Start the sandbox in the background, in the hub's task group: the hub serves meanwhile. Called at start-up
        when a key or a server has Code Mode, and by the first program otherwise; later calls do nothing."""
        if self._starting or self.task_group is None:
            return
        self._starting = True
        self.task_group.start_soon(self._own_pool)

    def stop(self) -> None:
        """Close the sandbox (now, or as soon as it is up if it is starting). The hub calls this before it cancels
        its task group, which cannot reach the shielded pool."""
        self._stop.set()

    async def wait_settled(self) -> None:
        """Wait until the sandbox is up or known not to come up (see `state`)."""
        await self._settled.wait()

    async def pool(self, deadline: float) -> SandboxPool:
        """The worker pool; a program that arrives while it starts waits up to `deadline` seconds.

        Raises:
            UpstreamFailed: the sandbox cannot start (the message names the cause), or the hub is not running.
            UpstreamTimedOut: it is still starting after `deadline` seconds.
        """
        if self.task_group is None:
            raise UpstreamFailed("Code Mode is not running")
        self.prepare()
        if not self._settled.is_set():
            self.waiting += 1
            try:
                with anyio.move_on_after(deadline):
                    await self._settled.wait()
            finally:
                self.waiting -= 1
        if self._failure is not None:
            raise UpstreamFailed(f"Code Mode is unavailable: {self._failure}")
        if self._pool is None:
            raise UpstreamTimedOut(
                f"Code Mode is still starting (its sandbox is being prepared, which a first start takes a minute or "
                f"more for); the program waited {deadline:g} s and did not run: try again shortly"
            )
        return self._pool

    async def _own_pool(self) -> None:
        from sandbox.pool import SandboxPool, SandboxUnavailableError  # loaded with the first key or program

        assert self.task_group is not None
        started = time.perf_counter()
        pool = SandboxPool(size=self._pool_size)
        try:
            await pool.prepare()  # the guest build, cancellable: the hub may stop during a first start
            # The hub stops by cancelling its task group. Starting or closing the pool under that cancellation would
            # stop at its first checkpoint, leaving the pool's own task group open and its workers running. So the
            # pool lives in a shielded scope, and the hub sets `_stop` (see `stop`) before it cancels: a pool that
            # is still starting then closes as soon as it is up.
            with anyio.CancelScope(shield=True):
                async with pool:
                    self._pool = pool
                    self._settled.set()
                    logger.info(
                        "Code Mode sandbox ready: %d workers in %.1f s", pool.size, time.perf_counter() - started
                    )
                    try:
                        await self._stop.wait()
                    finally:
                        self._pool = None
        except SandboxUnavailableError as exc:
            self._fail(str(exc))
        except Exception as exc:  # never let the sandbox take the hub's task group down
            self._fail(f"the sandbox could not start ({type(exc).__name__}: {exc})", exc)

    def _fail(self, cause: str, exc: Exception | None = None) -> None:
        """Remember why the sandbox cannot start and log it, once: every later program gets the same cause."""
        self._failure = cause
        logger.error("Code Mode is unavailable: %s", cause, exc_info=exc)
        self._settled.set()

    async def execute(self, call: Call, view: RegistryView) -> Outcome:
        """The executor for `code.run`: run the program; each of its tool calls is an `mcp.tool` call through the
        pipeline (door `code`, same principal and endpoint, the run as parent), authorised there one by one."""
        if call.principal is None or self.pipeline is None:
            raise UpstreamFailed("Code Mode is not running")
        pipeline = self.pipeline
        principal = call.principal
        code = call.payload.get("code") if isinstance(call.payload, dict) else None
        if not isinstance(code, str) or not code.strip():
            raise BadRequest("execute_tool_code needs a non-empty 'code' string")
        catalog = self._catalog(principal, view, call.scope).catalog

        from sandbox import ToolCallError
        from sandbox.metatools import render_result

        async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
            inner = Call(
                door="code",
                operation="mcp.tool",
                target=name,
                payload=arguments,
                principal=principal,
                parent_id=call.call_id,
                scope=call.scope,
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

        limits = self._limits(principal.key)
        pool = await self.pool(limits.total_timeout if limits is not None else _default_total_timeout())
        result = await pool.run(code, tool_caller, catalog=catalog, limits=limits, owner=principal.key.id)
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
        principal: Principal,
        view: RegistryView,
        code: str,
        approved: Callable[[str], bool],
        scope: str | None = None,
    ) -> bool:
        """Whether a program may run without asking: every tool it can call is approved (decided with `ast`).

        False when the set cannot be determined (a computed tool name, a server object passed around, ...) or names
        a tool outside the principal's Code Mode catalog. Static analysis decides only whether to ask: the run
        itself is confined to the approved tools by the authz stage (`Principal.narrowed`), call by call.
        """
        from sandbox import tools_used

        usage = tools_used(code, self._catalog(principal, view, scope).catalog)
        return bool(usage.determined) and all(approved(name) for name in usage.tools)


def _default_total_timeout() -> float:
    from sandbox import SandboxLimits

    return SandboxLimits().total_timeout


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["isError"] = True
    return result


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

"""Host side of the guest's only way out: ``tools.call`` / ``tools.call-many`` end up in a ``ToolCaller``.

The worker forwards each batch of calls from the guest to the parent process; :class:`CallBudget` enforces the
tool-call budget, the per-call timeout and the result-size cap there, in the event loop where the ``ToolCaller``
(bound by the hub to its governed pipeline) lives. Nothing here raises into the guest: every failure becomes an
error message the program receives as ``ToolError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import orjson

from sandbox.limits import SandboxLimits
from sandbox.result import ToolCallRecord

logger = logging.getLogger(__name__)


class ToolCallError(Exception):
    """A tool call failed in a way the program may see (refused, unknown tool, upstream error).

    The ``ToolCaller`` raises it; its message reaches the program as ``ToolError``.
    """


class ToolCaller(Protocol):
    """Runs one tool call for the program. Raise :class:`ToolCallError` for a failure the program may see."""

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any: ...


Reply = tuple[bool, str]


class CallBudget:
    """Per-run bookkeeping of tool calls: budget, timeout, size cap and the record of what was called."""

    def __init__(self, caller: ToolCaller, limits: SandboxLimits) -> None:
        self.caller = caller
        self.limits = limits
        self.records: list[ToolCallRecord] = []
        self.tool_time = 0.0

    async def dispatch(self, calls: Sequence[tuple[str, str]]) -> list[Reply]:
        """Run a batch of ``(name, arguments JSON)``; a batch of several runs concurrently."""
        started = time.perf_counter()
        if len(calls) == 1:
            replies = [await self._one(*calls[0])]
        else:
            replies: list[Reply] = [(False, "not run")] * len(calls)

            async def run(index: int, name: str, args_json: str) -> None:
                replies[index] = await self._one(name, args_json)

            async with anyio.create_task_group() as group:
                for index, (name, args_json) in enumerate(calls):
                    group.start_soon(run, index, name, args_json)
        self.tool_time += time.perf_counter() - started
        return replies

    async def _one(self, name: str, args_json: str) -> Reply:
        if len(self.records) >= self.limits.max_tool_calls:
            message = f"tool call budget exhausted: at most {self.limits.max_tool_calls} calls per run"
            self.records.append(ToolCallRecord(name, False, 0.0, message))
            return False, message
        started = time.perf_counter()
        ok, text = await self._invoke(name, args_json)
        self.records.append(ToolCallRecord(name, ok, time.perf_counter() - started, None if ok else text))
        return ok, text

    async def _invoke(self, name: str, args_json: str) -> Reply:
        try:
            arguments = orjson.loads(args_json)
        except orjson.JSONDecodeError:
            return False, "arguments are not valid JSON"
        if not isinstance(arguments, dict):
            return False, "arguments must be a JSON object"
        timeout = self.limits.tool_timeout
        try:
            with anyio.fail_after(timeout):
                value = await self.caller(name, arguments)
        except TimeoutError:
            return False, f"timed out after {timeout:g} s"
        except ToolCallError as exc:
            return False, str(exc) or type(exc).__name__
        except Exception:
            logger.exception("tool caller failed on %s", name)
            return False, "the tool call failed (internal error)"
        return encode_result(value, self.limits.max_tool_result_bytes)


def encode_result(value: Any, cap: int) -> Reply:
    """A tool result as JSON for the guest, or an error if it cannot be encoded or exceeds ``cap`` bytes."""
    if isinstance(value, (str, bytes)) and len(value) > cap:
        return False, f"result is {len(value)} bytes, over the {cap}-byte cap; ask for less data"
    try:
        data = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        return False, f"result could not be encoded as JSON: {exc}"
    if len(data) > cap:
        return False, f"result is {len(data)} bytes, over the {cap}-byte cap; ask for less data"
    return True, data.decode()

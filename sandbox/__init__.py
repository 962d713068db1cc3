"""Code Mode: run model-written Python programs that call tools, in a wasmtime sandbox. Never imports ``hub``.

The hub creates one :class:`SandboxPool` in its lifespan and runs programs with a :class:`ToolCaller` bound to its
governed pipeline; everything else here is pure: the tool catalog, stubs and docs for the model, the four
meta-tools, the static analysis of which tools a program calls, and the pre-check. The pool and the guest build
load on first use, so a hub that never runs a program does not carry them.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sandbox.analysis import ToolUsage, tools_used
from sandbox.bridge import ToolCaller, ToolCallError
from sandbox.catalog import ToolCatalog, ToolEntry, ToolSpec, default_call_name
from sandbox.limits import SandboxLimits
from sandbox.metatools import (
    META_TOOLS,
    MetaToolError,
    execute_tool_code,
    get_tool_docs,
    list_tool_files,
    read_tool_file,
)
from sandbox.precheck import PrecheckResult, precheck
from sandbox.result import ErrorKind, RunError, RunOk, RunResult, ToolCallRecord
from sandbox.stubs import server_stub, tool_docs

__all__ = [
    "META_TOOLS",
    "Artifact",
    "ErrorKind",
    "GuestBuildError",
    "MetaToolError",
    "PrecheckResult",
    "RunError",
    "RunOk",
    "RunResult",
    "SandboxLimits",
    "SandboxPool",
    "SandboxUnavailableError",
    "ToolCallError",
    "ToolCallRecord",
    "ToolCaller",
    "ToolCatalog",
    "ToolEntry",
    "ToolSpec",
    "ToolUsage",
    "cache_dir",
    "default_call_name",
    "ensure_artifact",
    "execute_tool_code",
    "get_tool_docs",
    "list_tool_files",
    "precheck",
    "read_tool_file",
    "server_stub",
    "tool_docs",
    "tools_used",
]

if TYPE_CHECKING:
    from sandbox.build import Artifact, GuestBuildError, cache_dir, ensure_artifact
    from sandbox.pool import SandboxPool, SandboxUnavailableError

_LAZY = {
    "Artifact": "build",
    "GuestBuildError": "build",
    "cache_dir": "build",
    "ensure_artifact": "build",
    "SandboxPool": "pool",
    "SandboxUnavailableError": "pool",
}


def __getattr__(name: str) -> Any:
    """Load the pool and the guest build on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"sandbox.{module}"), name)
    globals()[name] = value
    return value

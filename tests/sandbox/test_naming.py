"""Server names in programs: a server keeps its own name wherever the program's namespace allows it, and a program
that reaches a server by a name it does not have gets an error that says which name to use."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import RunError, RunOk, SandboxPool, ToolCatalog, read_tool_file
from sandbox.catalog import SANDBOX_MODULES

from .conftest import RecordingCaller

pytestmark = pytest.mark.anyio

TIME_TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_current_time",
        "description": "Current time in a time zone.",
        "inputSchema": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    }
]
APPLY_TOOLS: list[dict[str, Any]] = [
    {"name": "apply", "inputSchema": {"type": "object", "properties": {"x": {"type": "integer"}}}},
]


def test_a_server_named_like_a_sandbox_module_keeps_its_name() -> None:
    catalog = ToolCatalog.from_mcp({"time": TIME_TOOLS, "json": APPLY_TOOLS})
    assert sorted(catalog.servers) == ["json", "time"]
    stub = read_tool_file(catalog, "servers/time.py")
    assert "Call as time.<tool>(...)" in stub
    assert "import time as time_module" in stub  # how to reach the module the server's name hides


def test_names_a_program_relies_on_are_still_renamed() -> None:
    catalog = ToolCatalog.from_mcp({"filter": APPLY_TOOLS, "result": APPLY_TOOLS, "tools": APPLY_TOOLS})
    assert sorted(catalog.servers) == ["filter_", "result_", "tools_"]


async def test_a_program_calls_the_time_server_by_its_name(pool: SandboxPool) -> None:
    caller = RecordingCaller()
    catalog = ToolCatalog.from_mcp({"time": TIME_TOOLS})
    result = await pool.run("result = time.get_current_time(timezone='UTC')", caller, catalog=catalog)
    assert isinstance(result, RunOk), result
    assert caller.calls == [("time__get_current_time", {"timezone": "UTC"})]


async def test_the_module_stays_reachable_under_another_name(pool: SandboxPool) -> None:
    caller = RecordingCaller()
    catalog = ToolCatalog.from_mcp({"time": TIME_TOOLS})
    code = "import time as clock\nresult = [clock.time() > 0, time.get_current_time('UTC')['tool']]"
    result = await pool.run(code, caller, catalog=catalog)
    assert isinstance(result, RunOk), result
    assert result.result == [True, "time__get_current_time"]


@pytest.mark.parametrize(
    ("code", "line", "hint"),
    [
        ("import time\nresult = time.get_current_time('UTC')", 1, "`import time as time_module`"),
        ("x = 1\nfrom datetime import time\n", 2, "`from datetime import time as time_module`"),
        ("def f():\n    import time\n    return time.time()\nresult = f()", 2, "`import time as time_module`"),
    ],
)
async def test_an_import_that_would_hide_a_server_is_refused_with_the_fix(
    pool: SandboxPool, code: str, line: int, hint: str
) -> None:
    caller = RecordingCaller()
    catalog = ToolCatalog.from_mcp({"time": TIME_TOOLS})
    result = await pool.run(code, caller, catalog=catalog)
    assert isinstance(result, RunError)
    assert result.kind == "rejected" and result.line == line
    assert "would hide the server 'time'" in result.message and hint in result.message
    assert caller.calls == []


@pytest.mark.parametrize(
    ("server", "what"),
    [("filter", "Python's builtin"), ("result", "the program's result"), ("tools", "the generic tool caller")],
)
async def test_a_renamed_server_reached_by_its_own_name_gets_a_clear_error(
    pool: SandboxPool, server: str, what: str
) -> None:
    catalog = ToolCatalog.from_mcp({server: APPLY_TOOLS})
    result = await pool.run(f"print('x')\nvalue = {server}.apply(x=1)", RecordingCaller(), catalog=catalog)
    assert isinstance(result, RunError)
    assert result.kind == "rejected" and result.line == 2
    assert result.message == (
        f"NameError: no server named {server!r} in programs: the server {server!r} is `{server}_` "
        f"(`{server}` is {what}); write `{server}_.apply(...)`"
    )
    assert "forget to import" not in result.message


async def test_a_builtin_that_shares_a_servers_name_still_works(pool: SandboxPool) -> None:
    catalog = ToolCatalog.from_mcp({"filter": APPLY_TOOLS})
    code = "result = [list(filter(None, [0, 1, 2])), filter_.apply(x=3)['tool']]"
    result = await pool.run(code, RecordingCaller(), catalog=catalog)
    assert isinstance(result, RunOk), result
    assert result.result == [[1, 2], "filter__apply"]


async def test_a_program_that_rebinds_the_name_itself_is_left_alone(pool: SandboxPool) -> None:
    catalog = ToolCatalog.from_mcp({"result": APPLY_TOOLS})
    code = "class Box:\n    def apply(self, x):\n        return x * 2\nresult = Box()\nresult = result.apply(x=4)"
    outcome = await pool.run(code, RecordingCaller(), catalog=catalog)
    assert isinstance(outcome, RunOk), outcome
    assert outcome.result == 8


async def test_the_catalogs_module_list_is_the_guests(pool: SandboxPool) -> None:
    outcome = await pool.run("import no_such_module", RecordingCaller())
    assert isinstance(outcome, RunError)
    available = outcome.message.split("available: ", 1)[1].strip()
    assert frozenset(available.split(", ")) == SANDBOX_MODULES

"""Stubs, docs and the four meta-tools, from MCP tool definitions."""

from __future__ import annotations

import pytest

from sandbox import (
    META_TOOLS,
    MetaToolError,
    RunError,
    RunOk,
    ToolCatalog,
    get_tool_docs,
    list_tool_files,
    read_tool_file,
    server_stub,
)
from sandbox.catalog import identifier
from sandbox.metatools import meta_tool_definitions, render_result
from sandbox.result import ToolCallRecord


def test_identifiers_are_valid_and_unique() -> None:
    assert identifier("list-issues") == "list_issues"
    assert identifier("2fa") == "t_2fa"
    assert identifier("class") == "class_"
    assert identifier("json", reserved=frozenset({"json"})) == "json_"
    assert identifier("a-b", taken={"a_b"}) == "a_b_2"


def test_catalog_maps_python_names_to_hub_names(catalog: ToolCatalog) -> None:
    entry = catalog.find("github", "list-issues")
    assert entry is not None and entry.method == "list_issues" and entry.spec.call_name == "github__list-issues"
    assert catalog.resolve("github.list_issues") == "github__list-issues"
    assert catalog.resolve("github__create_issue") == "github__create_issue"
    assert catalog.resolve("github.nope") is None
    assert catalog.guest_map()["slack"] == {"post_message": ["slack__post_message", ["channel", "text"]]}


def test_server_stub_is_one_line_per_tool(catalog: ToolCatalog) -> None:
    stub = server_stub(catalog, "github")
    lines = stub.splitlines()
    assert lines[3] == (
        "def create_issue(title: str, body: str | None = None, labels: list[str] | None = None) -> dict: ..."
        "  # Create an issue in a repository."
    )
    assert (
        lines[4] == "def list_issues(state: Literal['open', 'closed'] | None = None) -> Any: ...  # List open issues."
    )
    assert len(lines) == 5
    compile(stub.replace("Literal", "list"), "stub", "exec")  # the stub is valid Python


def test_tool_docs_cover_schema_and_output(catalog: ToolCatalog) -> None:
    docs = get_tool_docs(catalog, "github", "create_issue")
    assert docs.startswith("github.create_issue(title: str")
    assert "  title: str - Issue title" in docs
    assert "  labels: list[str] (optional)" in docs
    assert "Returns: dict" in docs and "  number: int - Issue number" in docs
    assert 'tools.call("github__create_issue"' in docs


def test_meta_tools_list_and_read(catalog: ToolCatalog) -> None:
    assert list_tool_files(catalog) == "servers/github.py  (2 tools)\nservers/slack.py  (1 tools)\n"
    assert read_tool_file(catalog, "servers/slack.py", 4, 4).startswith("def post_message(channel: str, text: str)")
    assert read_tool_file(catalog, "slack").count("\n") == 4
    with pytest.raises(MetaToolError, match=r"files: servers/github.py, servers/slack.py"):
        read_tool_file(catalog, "servers/jira.py")
    with pytest.raises(MetaToolError, match="empty line range"):
        read_tool_file(catalog, "servers/slack.py", 9, 10)
    with pytest.raises(MetaToolError, match="its tools: create_issue, list_issues"):
        get_tool_docs(catalog, "github", "nope")
    with pytest.raises(MetaToolError, match="no server"):
        get_tool_docs(catalog, "jira", "x")


def test_meta_tool_definitions_are_valid_mcp_tools(catalog: ToolCatalog) -> None:
    assert [t["name"] for t in META_TOOLS] == [
        "list_tool_files",
        "read_tool_file",
        "get_tool_docs",
        "execute_tool_code",
    ]
    for tool in META_TOOLS:
        assert tool["inputSchema"]["type"] == "object" and tool["description"]
    described = meta_tool_definitions(catalog)[-1]["description"]
    assert "github: create_issue, list_issues; slack: post_message" in described


def test_render_result() -> None:
    ok = RunOk("hi\n", {"a": 1}, (ToolCallRecord("t", True, 0.1),))
    assert render_result(ok) == 'Output:\nhi\nResult: {"a": 1}\n'
    error = RunError("timeout", "the program ran out of time")
    assert render_result(error) == "Error (timeout): the program ran out of time\n"


NULLABLE_TOOL = {
    "name": "find",
    "description": "Find things.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "needed": {"type": ["string", "null"]},
            "listed": {"type": ["string", "null"]},
            "either": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "defaulted": {"type": "integer", "default": None},
            "first_null": {"type": ["null", "boolean"]},
            "choice": {"enum": ["x", None]},
            "items": {"type": "array", "items": {"type": ["string", "null"]}},
        },
        "required": ["needed"],
    },
    "outputSchema": {"anyOf": [{"type": "object"}, {"type": "null"}]},
}


def test_a_type_is_never_unioned_with_none_twice() -> None:
    catalog = ToolCatalog.from_mcp({"s": [NULLABLE_TOOL]})
    line = server_stub(catalog, "s").splitlines()[3]
    assert line == (
        "def find(needed: str | None, listed: str | None = None, either: int | None = None, "
        "defaulted: int | None = None, first_null: bool | None = None, choice: Literal['x'] | None = None, "
        "items: list[str | None] | None = None) -> dict | None: ...  # Find things."
    )
    docs = get_tool_docs(catalog, "s", "find")
    assert "None | None" not in docs
    assert "  listed: str | None (optional)" in docs and "Returns: dict | None" in docs

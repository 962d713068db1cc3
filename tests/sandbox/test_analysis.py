"""Static analysis: which tools a program can call, or why that cannot be known."""

from __future__ import annotations

import pytest

from sandbox import ToolCatalog, tools_used


def test_server_method_calls_are_found(catalog: ToolCatalog) -> None:
    usage = tools_used("a = github.create_issue(title='x')\nslack.post_message('c', 't')", catalog)
    assert usage.determined
    assert usage.tools == {"github__create_issue", "slack__post_message"}


def test_literal_tools_call_and_call_many(catalog: ToolCatalog) -> None:
    code = (
        "tools.call('github__list-issues', {})\n"
        "tools.call_many([('slack.post_message', {}), {'name': 'github.create_issue', 'arguments': {}}])"
    )
    usage = tools_used(code, catalog)
    assert usage.determined
    assert usage.tools == {"github__list-issues", "slack__post_message", "github__create_issue"}


def test_await_forms_are_found(catalog: ToolCatalog) -> None:
    code = "import asyncio\nr = await asyncio.gather(github.list_issues(), github.create_issue(title='t'))"
    usage = tools_used(code, catalog)
    assert usage.determined and usage.tools == {"github__list-issues", "github__create_issue"}


def test_bound_method_counts_as_a_call(catalog: ToolCatalog) -> None:
    usage = tools_used("post = slack.post_message\npost('c', 't')", catalog)
    assert usage.determined and usage.tools == {"slack__post_message"}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("name = 'x'\ntools.call(name, {})", "computed tool name"),
        ("calls = []\ntools.call_many(calls)", "computed list"),
        ("g = github\ng.create_issue(title='x')", "used as a value"),
        ("getattr(github, 'create_issue')()", "getattr"),
        ("github = slack\ngithub.post_message('c', 't')", "reassigned"),
        ("def f(github):\n    github.x()", "parameter shadows"),
        ("f = tools.call\nf('x', {})", "other than as a call"),
        ("github.__class__", "dunder"),
        ("x = (", "does not parse"),
    ],
)
def test_dynamic_forms_cannot_be_determined(catalog: ToolCatalog, code: str, reason: str) -> None:
    usage = tools_used(code, catalog)
    assert not usage.determined
    assert any(reason in r for r in usage.reasons), usage.reasons


def test_unknown_tools_make_it_undetermined(catalog: ToolCatalog) -> None:
    usage = tools_used("github.delete_repo()\ntools.call('nope', {})", catalog)
    assert not usage.determined
    assert usage.unknown == {"github.delete_repo", "nope"}
    assert usage.reasons == ()


def test_program_without_tools(catalog: ToolCatalog) -> None:
    usage = tools_used("result = 1 + 1", catalog)
    assert usage.determined and usage.tools == frozenset()

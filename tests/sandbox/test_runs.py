"""Happy paths: what a program sees and what comes back."""

from __future__ import annotations

import pytest

from sandbox import RunError, RunOk, SandboxPool, ToolCatalog

from .conftest import BarrierCaller, RecordingCaller

pytestmark = pytest.mark.anyio


async def test_print_and_result_come_back(pool: SandboxPool) -> None:
    result = await pool.run("print('hello', 42)\nresult = {'n': [1, 2], 's': {3}}", RecordingCaller())
    assert isinstance(result, RunOk)
    assert result.stdout == "hello 42\n"
    assert result.result == {"n": [1, 2], "s": [3]}
    assert result.status == "ok"


async def test_server_objects_call_tools_by_their_hub_names(pool: SandboxPool, catalog: ToolCatalog) -> None:
    caller = RecordingCaller()
    code = "issue = github.create_issue('Bug', body='x')\nresult = [issue, github.list_issues(state='open')]"
    result = await pool.run(code, caller, catalog=catalog)
    assert isinstance(result, RunOk)
    assert caller.calls == [
        ("github__create_issue", {"title": "Bug", "body": "x"}),
        ("github__list-issues", {"state": "open"}),
    ]
    assert result.result[0] == {"tool": "github__create_issue", "arguments": {"title": "Bug", "body": "x"}}
    assert [c.name for c in result.tool_calls] == ["github__create_issue", "github__list-issues"]


async def test_tools_call_accepts_hub_names_and_dotted_names(pool: SandboxPool, catalog: ToolCatalog) -> None:
    caller = RecordingCaller()
    code = "a = tools.call('slack.post_message', {'channel': 'c', 'text': 't'})\nb = tools.call('other__x', n=1)"
    result = await pool.run(code, caller, catalog=catalog)
    assert isinstance(result, RunOk)
    assert caller.calls == [("slack__post_message", {"channel": "c", "text": "t"}), ("other__x", {"n": 1})]


async def test_call_many_runs_calls_concurrently(pool: SandboxPool) -> None:
    code = "result = tools.call_many([('t', {'n': i}) for i in range(4)])"
    result = await pool.run(code, BarrierCaller(4))
    assert isinstance(result, RunOk)
    assert result.result == [0, 1, 2, 3]


async def test_tool_errors_are_catchable_exceptions(pool: SandboxPool) -> None:
    code = "try:\n    tools.call('forbidden', {})\nexcept ToolError as e:\n    print('caught:', e.message)\nresult = 1"
    result = await pool.run(code, RecordingCaller())
    assert isinstance(result, RunOk)
    assert result.stdout == "caught: not permitted for this key\n"
    assert result.tool_calls[0].ok is False


async def test_uncaught_exception_reports_line_and_traceback(pool: SandboxPool) -> None:
    result = await pool.run("x = 1\nprint('before')\ny = {}['missing']", RecordingCaller())
    assert isinstance(result, RunError)
    assert result.kind == "exception"
    assert result.line == 3
    assert "KeyError" in result.message
    assert result.stdout == "before\n"
    assert "line 3" in result.traceback


async def test_await_and_gather_run_tool_calls_concurrently(pool: SandboxPool, catalog: ToolCatalog) -> None:
    code = (
        "import asyncio\n"
        "async def fetch(n):\n"
        "    return await tools.call('t', {'n': n})\n"
        "result = await asyncio.gather(*[fetch(i) for i in range(3)])"
    )
    result = await pool.run(code, BarrierCaller(3), catalog=catalog)
    assert isinstance(result, RunOk), result
    assert result.result == [0, 1, 2]


async def test_asyncio_run_and_task_group(pool: SandboxPool, catalog: ToolCatalog) -> None:
    code = (
        "import asyncio\n"
        "async def main():\n"
        "    async with asyncio.TaskGroup() as tg:\n"
        "        a = tg.create_task(github.create_issue(title='a'))\n"
        "        b = tg.create_task(github.create_issue(title='b'))\n"
        "    return [a.result()['arguments'], b.result()['arguments']]\n"
        "result = asyncio.run(main())"
    )
    result = await pool.run(code, RecordingCaller(), catalog=catalog)
    assert isinstance(result, RunOk), result
    assert result.result == [{"title": "a"}, {"title": "b"}]


async def test_nothing_leaks_between_runs(pool: SandboxPool) -> None:
    first = await pool.run("import json\njson.secret = 1\nleak = 'x'\nresult = 1", RecordingCaller())
    assert isinstance(first, RunOk)
    for _ in range(3):  # whichever worker takes it, the instance is fresh
        second = await pool.run("import json\nresult = [hasattr(json, 'secret'), 'leak' in dir()]", RecordingCaller())
        assert isinstance(second, RunOk)
        assert second.result == [False, False]


async def test_clock_is_frozen_at_start_and_randomness_differs(pool: SandboxPool) -> None:
    code = "import datetime, time, random\nt = time.time()\ntime.sleep(5)\nresult = [time.time() - t, random.random()]"
    first = await pool.run(code, RecordingCaller())
    second = await pool.run(code, RecordingCaller())
    assert isinstance(first, RunOk) and isinstance(second, RunOk)
    assert first.result[0] == 5.0
    assert first.result[1] != second.result[1]
    today = await pool.run("import datetime\nresult = datetime.date.today().year", RecordingCaller())
    assert isinstance(today, RunOk) and today.result >= 2025


async def test_result_must_be_json(pool: SandboxPool) -> None:
    result = await pool.run("result = object()", RecordingCaller())
    assert isinstance(result, RunError)
    assert result.kind == "result"
    assert "JSON" in result.message
    not_a_number = await pool.run("result = [1.0, float('nan')]", RecordingCaller())
    assert isinstance(not_a_number, RunError)
    assert not_a_number.kind == "result"
    assert "JSON" in not_a_number.message


async def test_syntax_errors_are_reported_before_running(pool: SandboxPool) -> None:
    result = await pool.run("def f(:\n  pass", RecordingCaller())
    assert isinstance(result, RunError)
    assert (result.kind, result.line) == ("syntax", 1)


async def test_corpus_programs_run(pool: SandboxPool, catalog: ToolCatalog) -> None:
    from .corpus import PROGRAMS

    async def lister(name: str, arguments: dict[str, object]) -> object:
        return [{"title": "a", "labels": ["bug"]}] if name == "github__list-issues" else {"ok": True}

    failures = []
    for code in PROGRAMS:
        result = await pool.run(code, lister, catalog=catalog)
        if not isinstance(result, RunOk):
            failures.append((code, result.message))
    assert failures == []

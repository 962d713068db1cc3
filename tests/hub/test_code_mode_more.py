"""Code Mode through the MCP door, continued: per-key sandbox limits, static auto-approval, concurrent runs from
two keys, large tool results inside a program, and the meta-tools on the single-server endpoint `/mcp/{server}`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import orjson
import pytest

from hub.call import Principal
from sandbox.limits import SandboxLimits
from tests.hub.harness import ALICE, BOB, RunningHub, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

CAROL = "ahk-carol-test-secret-0000000000000000000000"
LIMITED = "ahk-limited-test-secret-000000000000000000000"
META = ["execute_tool_code", "get_tool_docs", "list_tool_files", "read_tool_file"]


def _text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def _result(result: types.CallToolResult) -> Any:
    """The JSON after `Result: ` in a successful run's text."""
    text = _text(result)
    assert not result.is_error, text
    line = next(line for line in text.splitlines() if line.startswith("Result: "))
    return orjson.loads(line.removeprefix("Result: "))


def _config() -> dict[str, Any]:
    config = base_config(
        {"fixture": fixture_stdio(), "other": fixture_stdio("other")},
        keys=[
            {"name": "coder", "secret": ALICE, "tools": ["fixture__*", "other__*"], "code_mode": True},
            {"name": "second", "secret": BOB, "tools": ["fixture__*"], "code_mode": True},
            {
                "name": "limited",
                "secret": LIMITED,
                "tools": ["fixture__*"],
                "code_mode": True,
                "code_limits": {"max_tool_calls": 2, "wall_time": 0.5, "max_tool_result_bytes": 100_000},
            },
            {"name": "scoped", "secret": CAROL, "tools": ["fixture__echo", "other__*"]},
        ],
    )
    config["servers"]["other"]["code_mode"] = True
    return config


def _principal(hub: RunningHub, secret: str) -> Principal:
    principal = hub.hub.authenticate(secret)
    assert principal is not None
    return principal


THREE_CALLS = "total = 0\nfor n in (1, 2, 3):\n    total = fixture.add(a=total, b=n)['result']\nresult = total\n"
CAUGHT = (
    "total = 0\n"
    "for n in (1, 2, 3):\n"
    "    try:\n"
    "        total = fixture.add(a=total, b=n)['result']\n"
    "    except ToolError as exc:\n"
    "        print('stopped:', exc)\n"
    "result = total\n"
)


async def test_max_tool_calls_of_a_key_stops_the_third_call_with_a_clear_error(tmp_path: Path) -> None:
    async with running_hub(_config(), tmp_path) as hub:
        async with mcp_client(hub.url(), LIMITED) as client:
            two = await client.call_tool("execute_tool_code", {"code": THREE_CALLS.replace("(1, 2, 3)", "(1, 2)")})
            three = await client.call_tool("execute_tool_code", {"code": THREE_CALLS})
            caught = await client.call_tool("execute_tool_code", {"code": CAUGHT})
        async with mcp_client(hub.url(), ALICE) as client:
            unlimited = await client.call_tool("execute_tool_code", {"code": THREE_CALLS})
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log(100)
    assert _result(two) == 3
    assert three.is_error
    text = _text(three)
    assert "budget" in text and "ToolError" in text and "line 3" in text, text
    assert _result(caught) == 3 and "stopped:" in _text(caught)
    assert _result(unlimited) == 6
    limited_parents = {r.call_id for r in rows if r.operation == "code.run" and r.key_name == "limited"}
    inner = [r for r in rows if r.parent_id in limited_parents]
    # The refused third call never reached the pipeline: two runs of 2 calls plus the 2-call run.
    assert len(limited_parents) == 3 and len(inner) == 6


async def test_wall_time_of_a_key_ends_a_busy_program_early(tmp_path: Path) -> None:
    busy = "n = 0\nwhile True:\n    n += 1\n"
    async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), LIMITED) as client:
        warm = await client.call_tool("execute_tool_code", {"code": "result = 1"})
        started = time.monotonic()
        run = await client.call_tool("execute_tool_code", {"code": busy})
        elapsed = time.monotonic() - started
        after = await client.call_tool("execute_tool_code", {"code": "result = fixture.add(a=2, b=3)['result']"})
    assert _result(warm) == 1
    assert run.is_error and "timeout" in _text(run).lower()
    # The key's 0.5 s applies, not the sandbox default: a run under the default cannot end before that much time
    # has passed (the guest is interrupted after its wall time, never before), however busy the machine is.
    assert elapsed < SandboxLimits().wall_time, elapsed
    assert _result(after) == 5


async def test_auto_approval_follows_the_tools_a_program_can_reach(tmp_path: Path) -> None:
    approved = {"fixture__echo", "fixture__add"}
    cases = {
        "fixture.echo(message='a')\nresult = fixture.add(a=1, b=2)": True,
        "tools.call('fixture__add', {'a': 1, 'b': 2})\ntools.call('fixture.echo', {'message': 'x'})": True,
        "tools.call_many([('fixture__echo', {'message': 'x'}), ('fixture.add', {'a': 1, 'b': 1})])": True,
        "add = fixture.add\nresult = [add(a=i, b=i) for i in range(3)]": True,
        "result = 1 + 1": True,
        "fixture.echo(message='a')\nfixture.fail(reason='no')": False,
        "other.echo(message='a')": False,
        "name = 'fixture__echo'\ntools.call(name, {'message': 'x'})": False,
        "for name in ['fixture__echo', 'fixture__add']:\n    tools.call(name, {})": False,
        "tools.call_many([(n, {}) for n in ['fixture__echo']])": False,
        "f = fixture\nf.echo(message='a')": False,
        "def run(fixture):\n    return fixture.echo(message='a')\n": False,
        "tools.call('github__create_issue', {})": False,
        "fixture.echo(message='a'": False,
    }
    async with running_hub(_config(), tmp_path) as hub:
        codemode = hub.hub.codemode
        view = hub.hub.view()
        coder = _principal(hub, ALICE)
        decided = {code: codemode.auto_approved(coder, view, code, approved.__contains__) for code in cases}
        everything = codemode.auto_approved(coder, view, "other.echo(message='a')", lambda name: True)
        # For a key that cannot reach `other`, its tools are unknown names: not approved even if all is.
        second = codemode.auto_approved(_principal(hub, BOB), view, "tools.call('other__echo', {})", lambda name: True)
    assert decided == cases
    assert everything is True
    assert second is False


def _isolated_program(token: str) -> str:
    return (
        f"token = {token!r}\n"
        "try:\n"
        "    seen = leaked\n"
        "except NameError:\n"
        "    seen = None\n"
        "leaked = token\n"
        "import textwrap\n"
        "try:\n"
        "    seen_module = textwrap.leaked\n"
        "except AttributeError:\n"
        "    seen_module = None\n"
        "try:\n"
        "    textwrap.leaked = token\n"
        "except Exception:\n"
        "    pass\n"
        "first = fixture.echo(message=token)['result']\n"
        "fixture.slow(seconds=0.2, steps=1)\n"
        "second = fixture.echo(message=token + '-again')['result']\n"
        "print(token)\n"
        "result = {'token': token, 'seen': seen, 'seen_module': seen_module, 'echoed': [first, second]}\n"
    )


async def test_concurrent_runs_from_two_keys_do_not_see_each_others_data(tmp_path: Path) -> None:
    tokens = {ALICE: [f"alice-{i}" for i in range(3)], BOB: [f"bob-{i}" for i in range(3)]}
    results: dict[str, types.CallToolResult] = {}
    async with running_hub(_config(), tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as alice, mcp_client(hub.url(), BOB) as bob:
            await alice.call_tool("execute_tool_code", {"code": "result = 0"})  # start the pool

            async def run(client: Any, token: str) -> None:
                results[token] = await client.call_tool("execute_tool_code", {"code": _isolated_program(token)})

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for secret, client in ((ALICE, alice), (BOB, bob)):
                        for token in tokens[secret]:
                            tg.start_soon(run, client, token)
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log(200)
    everyone = [t for group in tokens.values() for t in group]
    for token in everyone:
        value = _result(results[token])
        assert value == {"token": token, "seen": None, "seen_module": None, "echoed": [token, f"{token}-again"]}
        printed = _text(results[token])
        assert [t for t in everyone if t in printed.replace(f"{token}-again", "")] == [token]
    parents = {r.call_id: r for r in rows if r.operation == "code.run"}
    inner = [r for r in rows if r.parent_id in parents]
    assert len(parents) == 7 and len(inner) == 18
    assert all(r.key_name == parents[r.parent_id].key_name for r in inner)
    assert {parents[r.parent_id].key_name for r in inner} == {"coder", "second"}


async def test_a_large_tool_result_stays_inside_the_program(tmp_path: Path) -> None:
    program = (
        "big = 'x' * 300_000 + 'END'\n"
        "echoed = fixture.echo(message=big)['result']\n"
        "result = {'length': len(echoed), 'tail': echoed[-3:], 'same': echoed == big}\n"
    )
    capped = (
        "try:\n"
        "    fixture.echo(message='y' * 300_000)\n"
        "except ToolError as exc:\n"
        "    print('refused:', exc)\n"
        "result = fixture.echo(message='small')['result']\n"
    )
    async with running_hub(_config(), tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as client:
            run = await client.call_tool("execute_tool_code", {"code": program})
        async with mcp_client(hub.url(), LIMITED) as client:
            limited = await client.call_tool("execute_tool_code", {"code": capped})
    assert _result(run) == {"length": 300_003, "tail": "END", "same": True}
    assert len(_text(run)) < 200
    assert _result(limited) == "small"
    assert "refused:" in _text(limited) and "over the 100000-byte cap" in _text(limited)


REACH_OTHER = (
    "try:\n"
    "    result = tools.call('other__echo', {'message': 'across'})\n"
    "except ToolError as exc:\n"
    "    result = f'refused: {exc}'\n"
)


async def test_meta_tools_on_a_single_server_endpoint(tmp_path: Path) -> None:
    async with running_hub(_config(), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/other"), CAROL) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            files = _text(await client.call_tool("list_tool_files", {}))
            stub = _text(await client.call_tool("read_tool_file", {"path": "servers/other.py"}))
            run = await client.call_tool("execute_tool_code", {"code": "result = other.echo(message='scoped')"})
        async with mcp_client(hub.url("/mcp/fixture"), CAROL) as client:
            plain = sorted(t.name for t in (await client.list_tools()).tools)
            echoed = await client.call_tool("echo", {"message": "plain"})
        async with mcp_client(hub.url("/mcp/fixture"), ALICE) as client:
            coder_names = sorted(t.name for t in (await client.list_tools()).tools)
            coder_files = _text(await client.call_tool("list_tool_files", {}))
            coder_run = await client.call_tool("execute_tool_code", {"code": "result = fixture.add(a=20, b=22)"})
            coder_stub = await client.call_tool("read_tool_file", {"path": "servers/other.py"})
            coder_reach = await client.call_tool("execute_tool_code", {"code": REACH_OTHER})
        async with mcp_client(hub.url(), ALICE) as client:
            everywhere = await client.call_tool("execute_tool_code", {"code": REACH_OTHER})
    assert names == META
    assert files.strip().startswith("servers/other.py") and "fixture" not in files
    assert "def echo(" in stub
    assert _result(run) == {"result": "scoped"}
    assert plain == ["echo"]
    assert _text(echoed) == "plain"
    assert coder_names == META
    assert "servers/fixture.py" in coder_files and "other" not in coder_files
    assert _result(coder_run) == {"result": 42}
    assert coder_stub.is_error and "servers/fixture.py" in _text(coder_stub)
    # Through `tools.call` too, a single-server endpoint reaches that server only; `/mcp` reaches every server.
    assert _result(coder_reach) == "refused: other__echo: unknown tool: other__echo"
    assert _result(everywhere) == {"result": "across"}


def _worker_pids() -> set[int]:
    """This process's children that run `sandbox.worker`."""
    me = str(os.getpid())
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if ppid == me and b"sandbox.worker" in cmdline:
            found.add(int(proc.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_stopping_the_hub_stops_the_sandbox_workers(tmp_path: Path) -> None:
    before = _worker_pids()
    async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        run = await client.call_tool("execute_tool_code", {"code": "result = fixture.add(a=1, b=1)"})
        workers = _worker_pids() - before
    assert _result(run) == {"result": 2}
    assert len(workers) == 2
    assert [pid for pid in workers if _running(pid)] == []

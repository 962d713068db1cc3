"""The guard of `hub.runtime.protocol`, the one module that touches uvicorn's internals.

Each internal it relies on is checked here against the installed uvicorn, with the shape the module expects: the
parameters of each method it overrides or calls (`inspect.signature`), and what each attribute holds on a live
connection, before a request, while the app answers one and after the answer. An upgrade of uvicorn that renames,
retypes or drops any of them fails in this file, naming the internal; `check_uvicorn`, which `agenthub serve` runs
at start-up through `limited_protocol`, is shown to refuse such a uvicorn with the reason.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the shapes uvicorn's asyncio protocol holds (events, timer handles, loops)
import inspect
import re
import socket
import subprocess
import sys
import tomllib
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from hub.runtime.limits import ServingLimits
from hub.runtime.protocol import (
    SUPPORTED_UVICORN,
    UVICORN_CYCLE_SIGNATURES,
    UVICORN_INTERNALS,
    UVICORN_SIGNATURES,
    IncompatibleUvicorn,
    check_uvicorn,
    limited_protocol,
    uvicorn_mismatches,
)
from hub.settings import ConfigError
from tests.tools import REPO_ROOT, free_port

pytestmark = pytest.mark.anyio


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _transport_like(value: Any) -> bool:
    """What `_HeadersWithBody` forwards to (uvloop's transports are not asyncio classes, so by interface)."""
    return all(callable(getattr(value, name, None)) for name in ("write", "writelines", "close", "is_closing"))


PROTOCOL_SHAPES: dict[str, Any] = {
    "transport": _transport_like,
    "loop": lambda value: callable(getattr(value, "call_later", None)),
    "pipeline": lambda value: isinstance(value, deque),
    "timeout_keep_alive": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
}
"""What each attribute of `HttpToolsProtocol` the module uses holds on an open connection (`cycle` and
`timeout_keep_alive_task` change with the request: checked at each step below)."""

CYCLE_SHAPES: dict[str, Any] = {
    "transport": _transport_like,
    "scope": lambda value: isinstance(value, dict) and isinstance(value.get("method"), str),
    "response_started": _is_bool,
    "response_complete": _is_bool,
    "chunked_encoding": lambda value: value is None or isinstance(value, bool),
    "more_body": _is_bool,
    "disconnected": _is_bool,
    "message_event": lambda value: isinstance(value, asyncio.Event),
    "flow": lambda value: isinstance(getattr(value, "write_paused", None), bool),
    "access_log": _is_bool,
    "default_headers": lambda value: (
        isinstance(value, list) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in value)
    ),
    "keep_alive": _is_bool,
    "waiting_for_100_continue": _is_bool,
    "expected_content_length": lambda value: isinstance(value, int) and not isinstance(value, bool),
}
"""What each attribute of `RequestResponseCycle` the module uses holds while the app answers."""


class Observed(HttpToolsProtocol):
    """uvicorn's own protocol, remembering each connection so the test can look inside it."""

    opened: ClassVar[list[HttpToolsProtocol]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        Observed.opened.append(self)


class Snapshots:
    """What the app saw of its connection's protocol while answering, and a gate to hold it there."""

    def __init__(self) -> None:
        self.during: dict[str, Any] = {}
        self.release = anyio.Event()


SNAPSHOTS = Snapshots()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    [protocol] = Observed.opened
    cycle = protocol.cycle
    SNAPSHOTS.during = {
        "cycle": cycle,
        "keep_alive_task": protocol.timeout_keep_alive_task,
        **{f"cycle.{name}": getattr(cycle, name, AttributeError) for name in CYCLE_SHAPES},
    }
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def serving() -> AsyncGenerator[int]:
    """uvicorn with the observed protocol on 127.0.0.1, in this event loop; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    server = uvicorn.Server(uvicorn.Config(app, http=Observed, log_level="critical", lifespan="off", ws="none"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield sock.getsockname()[1]
            finally:
                server.should_exit = True
    finally:
        sock.close()


def test_every_method_the_adapter_overrides_or_calls_has_the_parameters_it_expects() -> None:
    for name, expected in UVICORN_SIGNATURES.items():
        method = getattr(HttpToolsProtocol, name, None)
        assert callable(method), f"uvicorn's HttpToolsProtocol lost {name}()"
        parameters = tuple(inspect.signature(method).parameters)
        assert parameters == expected, f"uvicorn's HttpToolsProtocol.{name} now takes {parameters}"
    for name, expected in UVICORN_CYCLE_SIGNATURES.items():
        method = getattr(RequestResponseCycle, name, None)
        assert callable(method), f"uvicorn's RequestResponseCycle lost {name}()"
        parameters = tuple(inspect.signature(method).parameters)
        assert parameters == expected, f"uvicorn's RequestResponseCycle.{name} now takes {parameters}"
    assert uvicorn_mismatches() == []
    check_uvicorn()


def test_the_names_of_uvicorns_module_the_header_block_reuses_are_what_it_expects() -> None:
    """`hub.runtime.protocol` writes a response's headers with uvicorn's own expressions and status lines."""
    from uvicorn.protocols.http import httptools_impl

    header, value, lines = (getattr(httptools_impl, name) for name in UVICORN_INTERNALS["httptools_impl names"])
    assert isinstance(header, re.Pattern) and isinstance(value, re.Pattern) and isinstance(lines, dict)
    assert header.search(b"x-name") is None and header.search(b"bad name") and header.search(b"a\r\n")
    assert value.search(b"a value\twith a tab") is None and value.search(b"a\r\nb") and value.search(b"\n")
    assert lines[200] == b"HTTP/1.1 200 OK\r\n"


async def test_every_attribute_the_adapter_uses_holds_what_it_expects_on_a_live_connection() -> None:
    declared = set(UVICORN_INTERNALS["HttpToolsProtocol attributes"]) - {"cycle", "timeout_keep_alive_task"}
    assert declared == set(PROTOCOL_SHAPES), "each internal the adapter names has its expected shape here"
    assert set(UVICORN_INTERNALS["RequestResponseCycle attributes"]) == set(CYCLE_SHAPES)
    Observed.opened.clear()
    async with serving() as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        with anyio.fail_after(60):  # only a hang trips it
            await stream.send(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi")
            received = b""
            while not received.endswith(b"ok"):
                received += await stream.receive()
        [protocol] = Observed.opened
        for name, fits in PROTOCOL_SHAPES.items():
            assert fits(getattr(protocol, name, AttributeError)), f"uvicorn's HttpToolsProtocol.{name} changed shape"

        during = SNAPSHOTS.during
        assert isinstance(during["cycle"], RequestResponseCycle), "uvicorn's HttpToolsProtocol.cycle changed shape"
        assert during["keep_alive_task"] is None, "uvicorn keeps its keep-alive timer while a request is answered"
        for name, fits in CYCLE_SHAPES.items():
            assert fits(during[f"cycle.{name}"]), f"uvicorn's RequestResponseCycle.{name} changed shape"
        assert (during["cycle.response_started"], during["cycle.more_body"]) == (False, False)
        assert during["cycle.scope"]["method"] == "POST" and during["cycle.transport"] is protocol.transport

        cycle = protocol.cycle
        assert cycle is during["cycle"] and cycle.response_started and cycle.response_complete
        assert cycle.chunked_encoding is False, "a response with a length is no longer marked as such"
        task = protocol.timeout_keep_alive_task
        assert task is not None and callable(getattr(task, "cancel", None)), "no keep-alive timer after a response"
    assert received.startswith(b"HTTP/1.1 200 ")


def test_a_uvicorn_past_the_pin_or_with_other_signatures_is_refused_with_the_reason() -> None:
    assert uvicorn_mismatches("0.55.0") == ["version 0.55.0 is outside >=0.34,<0.55"]
    assert uvicorn_mismatches("0.33.9") == ["version 0.33.9 is outside >=0.34,<0.55"]
    assert uvicorn_mismatches("1.0") == ["version 1.0 is outside >=0.34,<0.55"]

    class Changed(HttpToolsProtocol):
        def data_received(self, data: bytes, *, more: bool = False) -> None: ...

    class Dropped(HttpToolsProtocol):
        on_response_complete = None  # pyright: ignore[reportAssignmentType]

    assert uvicorn_mismatches(protocol=Changed) == [
        "HttpToolsProtocol.data_received takes (self, data, more), not (self, data)"
    ]
    assert uvicorn_mismatches(protocol=Dropped) == ["HttpToolsProtocol.on_response_complete() is gone"]

    class ChangedCycle(RequestResponseCycle):
        async def send(self, message: Any, flush: bool = True) -> None: ...

    assert uvicorn_mismatches(cycle=ChangedCycle) == [
        "RequestResponseCycle.send takes (self, message, flush), not (self, message)"
    ]
    with pytest.raises(IncompatibleUvicorn) as refused:
        check_uvicorn("0.55.0", Changed)
    assert isinstance(refused.value, ConfigError), "agenthub serve reports it as a config error, not a traceback"
    message = str(refused.value)
    assert "0.55.0" in message and "data_received" in message and message.endswith("install uvicorn>=0.34,<0.55")


def test_limited_protocol_serves_on_the_installed_uvicorn() -> None:
    assert issubclass(limited_protocol(ServingLimits()), HttpToolsProtocol)


SERVE_WITH_UVICORN_0_55 = """
import sys
import uvicorn
uvicorn.__version__ = "0.55.0"  # what an upgrade past the pin would install
from hub.cli.main import main
sys.exit(main(["serve", "--config", sys.argv[1], "--listen", sys.argv[2]]))
"""


def test_agenthub_serve_refuses_a_uvicorn_past_the_pin_with_the_reason_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "agenthub.toml"
    config.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    argv = [sys.executable, "-c", SERVE_WITH_UVICORN_0_55, str(config), f"127.0.0.1:{free_port()}"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 2, done.stderr
    assert "config error: the installed uvicorn does not fit hub.runtime.protocol" in done.stderr
    assert "version 0.55.0 is outside >=0.34,<0.55" in done.stderr and "Traceback" not in done.stderr


def test_the_supported_range_is_the_one_pyproject_pins() -> None:
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [d for d in dependencies if re.match(r"uvicorn\b", d)]
    low, high = SUPPORTED_UVICORN
    assert pin == f"uvicorn>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def test_the_test_server_helper_still_finds_the_signal_hook_it_overrides() -> None:
    """`llm.testing.server` keeps uvicorn off the test process's signal handlers through `Server.capture_signals`,
    the one other uvicorn name in this tree that is not documented API."""
    hook = getattr(uvicorn.Server, "capture_signals", None)
    assert callable(hook), "uvicorn.Server lost capture_signals(); llm/testing/server.py overrides it"
    assert tuple(inspect.signature(hook).parameters) == ("self",)

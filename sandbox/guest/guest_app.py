# pyright: basic, reportAttributeAccessIssue=false
"""The Code Mode guest: runs one model-written program inside the WebAssembly sandbox.

componentize-py builds this module, the bundled CPython and the bindings for ``world.wit`` into one component
(see ``sandbox/build.py``). Everything imported here at build time is part of the interpreter snapshot; nothing else
can be imported at run time (the WASI file system is a trapping stub), so ``_SOURCES`` below is also the stdlib
allowlist the program sees. Each run gets a fresh instance, so no state survives from one program to the next.

This file runs under the guest's CPython, never in the host process.
"""

from __future__ import annotations

import base64
import bisect
import builtins
import collections
import collections.abc
import copy
import dataclasses
import decimal
import difflib
import enum
import fractions
import functools
import hashlib
import heapq
import html
import importlib
import itertools
import json
import math
import operator
import pprint
import random
import re
import statistics
import string
import sys
import textwrap
import time as _real_time
import traceback
import types
import typing
import unicodedata
import urllib.parse
import uuid

_pydatetime = importlib.import_module("_pydatetime")  # pure-Python datetime: its clock is the frozen one
_bindings = importlib.import_module("wit_world")
_host = importlib.import_module("wit_world.imports.tools")

_FILENAME = "<code>"
_ALLOW_TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_BLOCKED_BUILTINS = ("open", "input", "breakpoint", "help", "exit", "quit", "eval", "exec", "compile", "memoryview")


class ToolError(Exception):
    """A tool call failed: refused, unknown, timed out or raised by the tool. Catch it like any exception."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool
        self.message = message


ToolError.__module__ = "builtins"  # tracebacks read "ToolError: ...", as for a builtin exception


class OutputLimitExceeded(BaseException):
    """The program printed more than the output cap (a BaseException so `except Exception` does not swallow it)."""


class _Clock:
    """Frozen wall clock: the run's start time from the host; ``sleep`` advances it instantly."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.now += seconds


def _time_module(clock: _Clock) -> types.ModuleType:
    mod = types.ModuleType(
        "time", "Time inside the sandbox: the clock stands at the run's start; sleep returns at once."
    )

    def gmtime(secs: float | None = None) -> _real_time.struct_time:
        return _real_time.gmtime(clock.now if secs is None else secs)

    def strftime(fmt: str, t: typing.Any = None) -> str:
        return _real_time.strftime(fmt, gmtime() if t is None else t)

    mod.time = clock.time
    mod.time_ns = lambda: int(clock.now * 1e9)
    mod.monotonic = mod.perf_counter = mod.process_time = clock.time
    mod.monotonic_ns = mod.perf_counter_ns = mod.time_ns
    mod.sleep = clock.sleep
    mod.gmtime = mod.localtime = gmtime
    mod.strftime = strftime
    mod.struct_time = _real_time.struct_time
    mod.mktime = lambda t: float(_calendar_timegm(t))
    mod.timezone = mod.altzone = 0
    mod.daylight = 0
    mod.tzname = ("UTC", "UTC")
    return mod


def _calendar_timegm(t: typing.Any) -> int:
    days = _pydatetime.date(t[0], 1, 1).toordinal() - _pydatetime.date(1970, 1, 1).toordinal() + t[7] - 1
    return ((days * 24 + t[3]) * 60 + t[4]) * 60 + t[5]


class _Run:
    """State of one program run: output buffer, tool map, call helpers."""

    def __init__(self, config: dict[str, typing.Any]) -> None:
        self.max_output = int(config.get("max_output", 65536))
        self.max_result = int(config.get("max_result", 1 << 20))
        self.max_error = int(config.get("max_error", 8192))
        self.max_args = int(config.get("max_args", 1 << 20))
        self.max_calls = max(1, int(config.get("max_calls", 100)))
        self.chunks: list[str] = []
        self.size = 0
        self.overflow = False
        self.servers: dict[str, dict[str, list[typing.Any]]] = config.get("servers", {})
        self.aliases: dict[str, str] = {}
        for server, methods in self.servers.items():
            for method, (call_name, _params) in methods.items():
                self.aliases[f"{server}.{method}"] = call_name
        self.is_async = bool(config.get("async"))
        self.code = ""

    # -- output -------------------------------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self.overflow:
            raise OutputLimitExceeded
        size = len(text.encode("utf-8", "replace"))
        if self.size + size > self.max_output:
            room = self.max_output - self.size
            self.chunks.append(text.encode("utf-8", "replace")[: max(room, 0)].decode("utf-8", "ignore"))
            self.size = self.max_output
            self.overflow = True
            raise OutputLimitExceeded
        self.chunks.append(text)
        self.size += size

    def print(self, *args: object, sep: str | None = " ", end: str | None = "\n", file: object = None, flush=False):
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        if file is not None and hasattr(file, "write") and not isinstance(file, _StdStream):
            file.write(sep.join(map(str, args)) + end)
            return
        self.write(sep.join(map(str, args)) + end)

    def stdout(self) -> str:
        return "".join(self.chunks)

    # -- tools --------------------------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def encode_args(self, name: str, args: typing.Any) -> str:
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise TypeError(f"arguments for {name} must be a dict, not {type(args).__name__}")
        try:
            return json.dumps(args, default=_json_default, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"arguments for {name} must be JSON-serializable: {exc}") from None

    def check_batch(self, label: str, prepared: list[tuple[str, str]]) -> None:
        """Refuse, before sending, what the host would refuse: too many calls at once, or too many bytes."""
        if len(prepared) > self.max_calls:
            raise ToolError(
                label, f"a batch of {len(prepared)} calls is more than the {self.max_calls} calls a run may make"
            )
        size = sum(
            len(name.encode("utf-8", "replace")) + len(args.encode("utf-8", "replace")) for name, args in prepared
        )
        if size > self.max_args:
            raise ToolError(
                label, f"arguments are {size} bytes as JSON, over the {self.max_args}-byte cap; pass less data"
            )

    def call(self, name: str, args: typing.Any) -> typing.Any:
        name = self.resolve(name)
        payload = self.encode_args(name, args)
        self.check_batch(name, [(name, payload)])
        try:
            text = _host.call(name, payload)
        except _bindings_err() as err:
            raise ToolError(name, str(err.value)) from None
        return json.loads(text)

    def call_many(self, calls: typing.Iterable[typing.Any], return_exceptions: bool = False) -> list[typing.Any]:
        prepared: list[tuple[str, str]] = []
        for item in calls:
            if isinstance(item, dict):
                name, args = item.get("name"), item.get("arguments", item.get("args"))
            else:
                name, args = item
            if not isinstance(name, str):
                raise TypeError("each call must be (name, arguments) or {'name': ..., 'arguments': ...}")
            name = self.resolve(name)
            prepared.append((name, self.encode_args(name, args)))
        outcomes = self.call_raw_many(prepared)
        values: list[typing.Any] = []
        for outcome in outcomes:
            if isinstance(outcome, ToolError) and not return_exceptions:
                raise outcome
            values.append(outcome)
        return values

    def call_raw_many(self, prepared: list[tuple[str, str]]) -> list[typing.Any]:
        if not prepared:
            return []
        self.check_batch(prepared[0][0] if len(prepared) == 1 else "call_many", prepared)
        replies = _host.call_many(prepared)
        out: list[typing.Any] = []
        for (name, _), reply in zip(prepared, replies, strict=True):
            if type(reply).__name__ == "Ok":
                out.append(json.loads(reply.value))
            else:
                out.append(ToolError(name, str(reply.value)))
        return out


def _bindings_err() -> type[BaseException]:
    return importlib.import_module("componentize_py_types").Err


def _json_default(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (_pydatetime.date, _pydatetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, fractions.Fraction)):
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _StdStream:
    """``sys.stdout``/``sys.stderr`` stand-in that writes into the run's output."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def write(self, text: str) -> int:
        self._run.write(text)
        return len(text)

    def flush(self) -> None:
        return None


# -- async support: a tiny synchronous driver; awaiting a tool call suspends the coroutine with a PendingCall ------
class PendingCall:
    """A tool call made in async code; ``await`` it (or pass it to ``asyncio.gather``) to get the result."""

    def __init__(self, run: _Run, name: str, args: typing.Any) -> None:
        self.run, self.name, self.payload = run, name, run.encode_args(name, args)
        self.done, self.value = False, None

    def __repr__(self) -> str:
        return f"<pending tool call {self.name}: use await>"

    def __await__(self):
        if not self.done:
            yield self
        if isinstance(self.value, ToolError):
            raise self.value
        return self.value


def _run_concurrently(run: _Run, awaitables: list[typing.Any], return_exceptions: bool) -> list[typing.Any]:
    """Drive coroutines in lock step; the tool calls they wait on in one round go to the host as one call-many."""
    iters = [aw.__await__() for aw in awaitables]
    outcomes: list[typing.Any] = [None] * len(iters)
    active = dict(enumerate(iters))
    while active:
        batch: dict[int, PendingCall] = {}
        for index, it in list(active.items()):
            try:
                yielded = it.send(None)
            except StopIteration as stop:
                outcomes[index] = stop.value
                del active[index]
                continue
            except Exception as exc:
                if not return_exceptions:
                    raise
                outcomes[index] = exc
                del active[index]
                continue
            if not isinstance(yielded, PendingCall):
                raise RuntimeError("only tool calls, asyncio.sleep and asyncio.gather can be awaited in the sandbox")
            batch[index] = yielded
        if batch:
            pending = list(batch.values())
            values = run.call_raw_many([(p.name, p.payload) for p in pending])
            for call, value in zip(pending, values, strict=True):
                call.done, call.value = True, value
    return outcomes


def _asyncio_module(run: _Run, clock: _Clock) -> types.ModuleType:  # noqa: C901 - one small class per asyncio name
    mod = types.ModuleType("asyncio", "asyncio inside the sandbox: tool calls awaited together run concurrently.")

    class Task:
        def __init__(self, coro: typing.Any) -> None:
            self._coro, self._done, self._value = coro, False, None

        def __await__(self):
            if not self._done:
                self._value = yield from self._coro.__await__()
                self._done = True
            return self._value

        def done(self) -> bool:
            return self._done

        def result(self) -> typing.Any:
            if not self._done:
                raise RuntimeError("task is not done yet")
            return self._value

    class _Gather:
        def __init__(self, aws: tuple[typing.Any, ...], return_exceptions: bool) -> None:
            self.aws, self.return_exceptions = aws, return_exceptions

        def __await__(self):
            return _run_concurrently(run, list(self.aws), self.return_exceptions)
            yield  # pragma: no cover - makes this a generator

    class TaskGroup:
        async def __aenter__(self):
            self._tasks: list[Task] = []
            return self

        def create_task(self, coro: typing.Any, **_: typing.Any) -> Task:
            task = Task(coro)
            self._tasks.append(task)
            return task

        async def __aexit__(self, *exc: object) -> None:
            if exc[0] is None:
                await _Gather(tuple(self._tasks), False)

    class Semaphore:
        def __init__(self, value: int = 1) -> None:
            self.value = value

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def acquire(self) -> bool:
            return True

        def release(self) -> None:
            return None

    async def sleep(delay: float, result: typing.Any = None) -> typing.Any:
        clock.sleep(delay)
        return result

    async def wait_for(aw: typing.Any, timeout: float | None = None) -> typing.Any:
        return await aw

    mod.gather = lambda *aws, return_exceptions=False: _Gather(aws, return_exceptions)
    mod.run = lambda coro, **_: _run_concurrently(run, [coro], False)[0]
    mod.create_task = mod.ensure_future = lambda coro, **_: Task(coro)
    mod.sleep, mod.wait_for = sleep, wait_for
    mod.Task, mod.TaskGroup, mod.Semaphore, mod.Lock = Task, TaskGroup, Semaphore, Semaphore
    mod.TimeoutError = TimeoutError
    return mod


# -- the program's namespace ----------------------------------------------------------------------------------------
_SOURCES: dict[str, types.ModuleType] = {
    m.__name__: m
    for m in (
        base64,
        bisect,
        collections,
        copy,
        dataclasses,
        decimal,
        difflib,
        enum,
        fractions,
        functools,
        hashlib,
        heapq,
        html,
        itertools,
        json,
        math,
        operator,
        pprint,
        random,
        re,
        statistics,
        string,
        textwrap,
        typing,
        unicodedata,
        urllib,
        uuid,
        collections.abc,
        urllib.parse,
    )
}
_SOURCES["datetime"] = _pydatetime
_SUBMODULES = ("collections.abc", "urllib.parse")
"""The stdlib allowlist: every module here was imported at build time; ``time`` and ``asyncio`` are shims."""


def _public(module: types.ModuleType, name: str) -> types.ModuleType:
    view = types.ModuleType(name, module.__doc__)
    for attr, value in vars(module).items():
        if not attr.startswith("_"):
            setattr(view, attr, value)
    return view


class _Server:
    """One MCP server as an object: one method per tool."""

    def __init__(self, run: _Run, server: str, methods: dict[str, list[typing.Any]]) -> None:
        self._server = server
        self._names = sorted(methods)
        for method, (call_name, params) in methods.items():
            setattr(self, method, _tool_method(run, server, method, call_name, params))

    def __getattr__(self, name: str) -> typing.Any:
        raise AttributeError(f"server {self._server!r} has no tool {name!r}; its tools: {', '.join(self._names)}")

    def __repr__(self) -> str:
        return f"<server {self._server}: {', '.join(self._names)}>"


def _tool_method(run: _Run, server: str, method: str, call_name: str, params: list[str]) -> typing.Any:
    def call(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        if len(args) > len(params):
            raise TypeError(f"{server}.{method}() takes at most {len(params)} positional arguments")
        for param, value in zip(params, args, strict=False):
            if param in kwargs:
                raise TypeError(f"{server}.{method}() got multiple values for argument {param!r}")
            kwargs[param] = value
        if run.is_async:
            return PendingCall(run, call_name, kwargs)
        return run.call(call_name, kwargs)

    call.__name__ = method
    call.__qualname__ = f"{server}.{method}"
    return call


class _Tools:
    """The generic door: ``tools.call(name, args)`` and ``tools.call_many([(name, args), ...])``."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def call(self, name: str, arguments: typing.Any = None, /, **kwargs: typing.Any) -> typing.Any:
        args = dict(arguments or {}, **kwargs)
        if self._run.is_async:
            return PendingCall(self._run, self._run.resolve(name), args)
        return self._run.call(name, args)

    def call_many(self, calls: typing.Iterable[typing.Any], return_exceptions: bool = False) -> list[typing.Any]:
        return self._run.call_many(calls, return_exceptions)

    def __repr__(self) -> str:
        return "<tools: call(name, arguments), call_many([(name, arguments), ...])>"


def _namespace(run: _Run, config: dict[str, typing.Any]) -> dict[str, typing.Any]:
    clock = _Clock(float(config.get("now", 0.0)))
    random.seed(config.get("seed", 0))
    uuid.uuid4 = lambda: uuid.UUID(int=random.getrandbits(128), version=4)
    shims = {"time": lambda: _time_module(clock), "asyncio": lambda: _asyncio_module(run, clock)}
    modules: dict[str, types.ModuleType] = {}

    def module(name: str) -> types.ModuleType:
        view = modules.get(name)
        if view is None:
            if name == "datetime":
                _pydatetime._time = module("time")
            view = shims[name]() if name in shims else _public(_SOURCES[name], name)
            if name in _SUBMODULES:
                setattr(module(name.split(".")[0]), name.split(".")[1], view)
            modules[name] = view
        return view

    def guarded_import(name: str, globals=None, locals=None, fromlist=(), level=0) -> types.ModuleType:
        if level:
            raise ImportError("relative imports are not available in the sandbox")
        if name not in _SOURCES and name not in shims:
            allowed = ", ".join(sorted([*_SOURCES, *shims]))
            raise ModuleNotFoundError(f"module {name!r} is not available in the sandbox; available: {allowed}")
        view = module(name)
        if "." in name and not fromlist:
            return module(name.split(".")[0])
        return view

    def blocked(name: str) -> typing.Any:
        def refuse(*args: typing.Any, **kwargs: typing.Any) -> typing.NoReturn:
            raise PermissionError(f"{name}() is not available in the sandbox (no files, no network, no eval)")

        return refuse

    safe_builtins = dict(vars(builtins))
    for name in _BLOCKED_BUILTINS:
        safe_builtins[name] = blocked(name)
    safe_builtins["__import__"] = guarded_import
    safe_builtins["print"] = run.print
    stream = _StdStream(run)
    sys.stdout = sys.stderr = stream  # the real ones are WASI stubs
    namespace: dict[str, typing.Any] = {"__builtins__": safe_builtins, "__name__": "__main__"}
    namespace["tools"] = _Tools(run)
    namespace["ToolError"] = ToolError
    for server, methods in run.servers.items():
        namespace[server] = _Server(run, server, methods)
    return namespace


def _error(run: _Run, kind: str, exc: BaseException | None, message: str) -> dict[str, typing.Any]:
    """An error outcome; the traceback keeps only the program's own frames (reading no source files)."""
    line = None
    trace = ""
    if exc is not None:
        frames = [
            (f.f_code.co_name, n) for f, n in traceback.walk_tb(exc.__traceback__) if f.f_code.co_filename == _FILENAME
        ]
        if isinstance(exc, SyntaxError) and exc.filename == _FILENAME:
            frames.append(("<module>", exc.lineno or 0))
        source = run.code.splitlines()
        parts = ["Traceback (most recent call last):\n"]
        for name, number in frames:
            text = source[number - 1].strip() if 0 < number <= len(source) else ""
            parts.append(f"  line {number}, in {name}\n    {text}\n")
            line = number
        if not isinstance(exc, SyntaxError):
            parts.extend(traceback.format_exception_only(type(exc), exc))
        trace = "".join(parts) if frames else ""
    return {
        "status": "error",
        "kind": kind,
        "message": _clip(message, run.max_error),
        "stdout": run.stdout(),
        "line": line,
        "traceback": _clip(trace, run.max_error),
    }


def _clip(text: str, cap: int) -> str:
    """``text`` in at most ``cap`` bytes (UTF-8): its head and its tail around a note saying how much it was."""
    data = text.encode("utf-8", "replace")
    if len(data) <= cap:
        return text
    note = f" [... {len(data)} bytes in all, cut to fit {cap} ...] "
    room = cap - len(note)
    if room < 2:
        return data[:cap].decode("utf-8", "ignore")
    head, tail = room - room // 2, room // 2
    return data[:head].decode("utf-8", "ignore") + note + data[len(data) - tail :].decode("utf-8", "ignore")


def _execute(run: _Run, code: str, config: dict[str, typing.Any]) -> dict[str, typing.Any]:
    run.code = code
    try:
        compiled = compile(code, _FILENAME, "exec", flags=_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        return _error(run, "syntax", exc, f"SyntaxError: {exc.msg} (line {exc.lineno})")
    namespace = _namespace(run, config)
    try:
        outcome = eval(compiled, namespace)  # noqa: S307 - this is the sandboxed interpreter running the program
        if compiled.co_flags & 0x80:  # CO_COROUTINE: top-level await
            _run_concurrently(run, [outcome], False)
    except OutputLimitExceeded as exc:
        return _error(run, "output_limit", exc, f"the program printed more than {run.max_output} bytes")
    except MemoryError as exc:
        return _error(run, "memory", exc, "MemoryError: the program ran out of memory")
    except RecursionError as exc:
        return _error(run, "exception", exc, f"RecursionError: {exc}")
    except BaseException as exc:
        return _error(run, "exception", exc, "".join(traceback.format_exception_only(type(exc), exc)).strip())
    if run.overflow:
        return _error(run, "output_limit", None, f"the program printed more than {run.max_output} bytes")
    value = namespace.get("result")
    return {"status": "ok", "stdout": run.stdout(), "result": value}


def _encode(run: _Run, outcome: dict[str, typing.Any]) -> str:
    if outcome["status"] == "ok":
        try:
            text = json.dumps(outcome.pop("result"), default=_json_default, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return json.dumps(_error(run, "result", None, f"`result` must be JSON-serializable: {exc}"))
        size = len(text.encode("utf-8", "replace"))
        if size > run.max_result:
            message = f"`result` is {size} bytes as JSON, over the {run.max_result}-byte cap; return less data"
            return json.dumps(_error(run, "output_limit", None, message))
        outcome["result_json"] = text
    return json.dumps(outcome, ensure_ascii=False)


class WitWorld:
    """The component's export: ``run(code, config-json) -> outcome-json``."""

    def run(self, code: str, config_json: str) -> str:
        config = json.loads(config_json)
        run = _Run(config)
        try:
            return _encode(run, _execute(run, code, config))
        except MemoryError:
            run.chunks.clear()
            return '{"status": "error", "kind": "memory", "message": "MemoryError: out of memory", "stdout": ""}'

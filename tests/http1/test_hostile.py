"""Hostile servers: every malformed, truncated, pipelined, slow and interim answer in one table.

Each case is what a scripted server sends after reading the request (one write per piece), then whether it closes
the connection or keeps it open (answering any further request properly). Every case checks:

- the outcome: exactly the response expected (never a second one's status, headers or body mixed in), or the
  error expected, within the request's deadline;
- no duplicated request: the server read exactly one;
- no leaked or broken connection: the pool keeps the connection only when it is whole and reusable, a follow-up
  request gets its own answer, and once the pool is closed every connection has ended (the client closed every
  connection the server kept open).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from http1 import BodyTooLarge, H1Pool, HttpError, HttpResponse, RequestMayHaveBeenProcessed
from tests.http1.scripted import Peer, Script, chunk, keep_alive, serving


@dataclass(frozen=True)
class Answer:
    """The response the client must return."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    reusable: bool
    """Whether the connection goes back to the pool afterwards."""


@dataclass(frozen=True)
class Case:
    id: str
    pieces: tuple[bytes, ...]
    expect: Answer | type[Exception]
    match: str = ""
    then: str = "hold"
    """"hold": keep the connection open and answer further requests properly; "close": close it."""
    method: str = "POST"
    timeout: float = 5.0
    max_body: int = 1 << 20
    max_head: int = 64 * 1024


CL2 = (("content-length", "2"),)
HEAD_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
OK = HEAD_OK + b"ok"
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\n"
HINTS = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"

CASES = [
    # Whole responses, however they are cut.
    Case("content-length", (OK,), Answer(200, b"ok", CL2, True)),
    Case("byte-by-byte", tuple(OK[i : i + 1] for i in range(len(OK))), Answer(200, b"ok", CL2, True)),
    Case(
        "chunked-with-trailer",
        (CHUNKED + chunk(b"ab") + chunk(b"cd") + b"0\r\nx-trailer: t\r\n\r\n",),
        Answer(200, b"abcd", (("transfer-encoding", "chunked"),), True),
    ),
    Case("no-reason-phrase", (b"HTTP/1.1 599 \r\ncontent-length: 2\r\n\r\nok",), Answer(599, b"ok", CL2, True)),
    Case(
        "latin-1-header-value",
        (b"HTTP/1.1 200 OK\r\nx-name: caf\xe9\r\ncontent-length: 2\r\n\r\nok",),
        Answer(200, b"ok", (("x-name", "caf\xe9"), *CL2), True),
    ),
    # Interim responses are skipped, their headers with them.
    Case("100-continue", (CONTINUE + OK,), Answer(200, b"ok", CL2, True)),
    Case("103-early-hints", (HINTS + OK,), Answer(200, b"ok", CL2, True)),
    Case(
        "interims-cut-anywhere",
        (CONTINUE[:7], CONTINUE[7:] + HINTS[:30], HINTS[30:] + OK),
        Answer(200, b"ok", CL2, True),
    ),
    Case(
        "101-switching-protocols",
        (b"HTTP/1.1 101 Switching\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n",),
        HttpError,
        "switched",
    ),
    Case("101-without-upgrade", (b"HTTP/1.1 101 Switching\r\n\r\n",), HttpError, "switched"),
    Case("closes-after-an-interim", (CONTINUE,), HttpError, "middle", then="close"),
    Case("endless-interims", (CONTINUE * 200,), HttpError, "header section larger than 4096", max_head=4096),
    # Bytes after the response are never read into it; the connection is not reused.
    Case(
        "second-response-same-read",
        (OK + b"HTTP/1.1 500 No\r\ncontent-length: 3\r\n\r\nbad",),
        Answer(200, b"ok", CL2, False),
    ),
    Case("second-status-line-cut-short", (OK + b"HTTP/1.1 5",), Answer(200, b"ok", CL2, False)),
    Case("more-body-than-announced", (OK + b"EXTRA",), Answer(200, b"ok", CL2, False)),
    Case("a-stray-crlf-is-tolerated", (OK + b"\r\n",), Answer(200, b"ok", CL2, True)),
    Case(
        "204-with-a-body",
        (b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\nabc",),
        Answer(204, b"", (("content-length", "3"),), False),
    ),
    Case("304-with-a-body", (b"HTTP/1.1 304 Not Modified\r\n\r\nabc",), Answer(304, b"", (), False)),
    # The response to HEAD ends with its headers.
    Case("head", (HEAD_OK,), Answer(200, b"", CL2, True), method="HEAD"),
    Case("head-followed-by-a-body", (OK,), Answer(200, b"", CL2, False), method="HEAD"),
    # Bodies without a length end with the connection, which is then gone.
    Case(
        "eof-delimited",
        (b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"),
        Answer(200, b"until the end", (), False),
        then="close",
    ),
    Case("eof-delimited-never-closed", (b"HTTP/1.1 200 OK\r\n\r\nand on",), TimeoutError, timeout=0.1),
    Case("http-1.0", (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",), Answer(200, b"ok", CL2, False)),
    Case(
        "http-1.0-keep-alive",
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok",),
        Answer(200, b"ok", (*CL2, ("connection", "keep-alive")), True),
    ),
    Case(
        "connection-close",
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",),
        Answer(200, b"ok", (("connection", "close"), *CL2), False),
    ),
    # Lengths that do not add up.
    Case(
        "duplicate-content-length",
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",),
        HttpError,
        "malformed",
    ),
    Case(
        "conflicting-content-length",
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",),
        HttpError,
        "malformed",
    ),
    Case("content-length-list", (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok",), HttpError, "malformed"),
    Case(
        "content-length-and-chunked",
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",),
        HttpError,
        "malformed",
    ),
    Case("negative-content-length", (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nok",), HttpError, "malformed"),
    Case("garbage-content-length", (b"HTTP/1.1 200 OK\r\ncontent-length: 2x\r\n\r\nok",), HttpError, "malformed"),
    Case(
        "content-length-overflow",
        (b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",),
        HttpError,
        "malformed",
    ),
    Case("chunk-size-garbage", (CHUNKED + b"zz\r\nok\r\n0\r\n\r\n",), HttpError, "malformed"),
    Case("chunk-size-negative", (CHUNKED + b"-2\r\nok\r\n0\r\n\r\n",), HttpError, "malformed"),
    Case(
        "gzip-transfer-coding",
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nxyz",),
        HttpError,
        "transfer coding",
    ),
    Case(
        "gzip-then-chunked",
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",),
        HttpError,
        "transfer coding",
    ),
    # Sizes past the limits.
    Case(
        "announced-body-too-large",
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n",),
        BodyTooLarge,
        "larger than 1000",
        max_body=1000,
    ),
    Case(
        "chunked-body-too-large",
        (CHUNKED + chunk(b"x" * 800), chunk(b"y" * 800)),
        BodyTooLarge,
        "larger than 1000",
        max_body=1000,
    ),
    Case(
        "headers-never-end",
        (b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 8192,),
        HttpError,
        "header section larger than 4096",
        max_head=4096,
    ),
    Case(
        "many-headers",
        (b"HTTP/1.1 200 OK\r\n" + b"x-h: v\r\n" * 1000,),
        HttpError,
        "header section larger than 4096",
        max_head=4096,
    ),
    # Cut off.
    Case("closes-without-a-byte", (), RequestMayHaveBeenProcessed, "may have processed", then="close"),
    Case("closes-in-the-status-line", (b"HTTP/1.1 20",), HttpError, "middle", then="close"),
    Case("closes-in-the-headers", (b"HTTP/1.1 200 OK\r\ncontent-le",), HttpError, "middle", then="close"),
    Case("closes-in-the-body", (HEAD_OK + b"o",), HttpError, "middle", then="close"),
    Case("closes-in-a-chunk", (CHUNKED + b"4\r\nab",), HttpError, "middle", then="close"),
    Case("closes-before-the-last-chunk", (CHUNKED + chunk(b"ab"),), HttpError, "middle", then="close"),
    Case("stalls-in-the-body", (HEAD_OK + b"o",), TimeoutError, timeout=0.1),
    Case("stalls-before-answering", (), TimeoutError, timeout=0.1),
    # Not HTTP/1.1 as written.
    Case("not-http", (b"SSH-2.0-OpenSSH\r\n\r\n",), HttpError, "malformed"),
    Case("bare-lf", (b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",), HttpError, "malformed"),
    Case("obs-fold", (b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 2\r\n\r\nok",), HttpError, "malformed"),
    Case("space-before-colon", (b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok",), HttpError, "malformed"),
    Case("nul-in-a-header", (b"HTTP/1.1 200 OK\r\nx: a\x00b\r\ncontent-length: 2\r\n\r\nok",), HttpError, "malformed"),
    Case("binary-noise", (bytes(range(256)),), HttpError, "malformed"),
]


def script(case: Case) -> Script:
    async def run(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(*case.pieces)
        if case.then == "hold":
            await keep_alive(peer)  # any further request on this connection gets a proper answer

    return run


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_hostile_answer_ends_in_the_right_outcome_without_a_leak_or_a_duplicate(case: Case) -> None:
    async with serving(script(case), keep_alive) as server:
        pool = H1Pool(server.url, max_body=case.max_body, max_head=case.max_head)
        outcome: HttpResponse | Exception
        with anyio.fail_after(5):
            try:
                outcome = await pool.request(case.method, "/", [], b"{}", timeout=case.timeout)
            except (HttpError, TimeoutError) as exc:
                outcome = exc

        if isinstance(case.expect, Answer):
            assert isinstance(outcome, HttpResponse), outcome
            got = (outcome.status, outcome.body, tuple(outcome.headers))
            assert got == (case.expect.status, case.expect.body, case.expect.headers)
            assert len(pool._idle) == (1 if case.expect.reusable else 0)
        else:
            assert isinstance(outcome, case.expect), outcome
            assert case.match in str(outcome)
            assert not pool._idle
        assert len(server.requests) == 1, "the request reached the server exactly once"

        with anyio.fail_after(5):  # the pool holds nothing broken: the next request gets its own answer
            follow_up = await pool.request("POST", "/", [], b"{}", timeout=5)
        assert follow_up.status == 200 and follow_up.body.startswith(b'{"echo":')
        assert len(server.requests) == 2
        reused = isinstance(case.expect, Answer) and case.expect.reusable
        assert server.connections == (1 if reused else 2)

        await pool.aclose()
        await server.all_ended(server.connections)
    if case.then == "hold":
        assert all(peer.closed_by_client for peer in server.peers), "a connection the server kept open was left open"

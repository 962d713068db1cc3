"""What a caller may send: the client owns the framing and the connection, and every refusal names its cause.

A refused request never leaves: these pools point at a closed port, so reaching the network would raise
ConnectFailed instead of the ValueError expected.
"""

from __future__ import annotations

import pytest

from http1 import H1Pool
from tests.http1.scripted import keep_alive, serving

pytestmark = pytest.mark.anyio

NOWHERE = "http://127.0.0.1:9/mcp"


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "CONNECTION"])
async def test_headers_the_client_sets_itself_are_refused_by_name(name: str) -> None:
    pool = H1Pool(NOWHERE)
    with pytest.raises(ValueError, match=f"header '{name}' is set by the HTTP client") as caught:
        await pool.request("POST", "/", [("Accept", "*/*"), (name, "1")], b"{}")
    assert type(caught.value) is ValueError
    with pytest.raises(ValueError, match=f"header '{name}'"):
        async with pool.stream("POST", "/", [(name, "1")], b"{}"):
            pass


async def test_a_header_value_outside_latin_1_is_a_value_error_naming_the_header() -> None:
    pool = H1Pool(NOWHERE)
    with pytest.raises(ValueError, match="header 'X-Title' holds characters outside latin-1") as caught:
        await pool.request("POST", "/", [("Accept", "caf\xe9"), ("X-Title", "\u2603 snow")], b"{}")
    assert type(caught.value) is ValueError, "not a bare UnicodeEncodeError"


async def test_a_target_outside_latin_1_is_a_value_error() -> None:
    pool = H1Pool(NOWHERE)
    with pytest.raises(ValueError, match="request target") as caught:
        await pool.request("GET", "/\u2603", [])
    assert type(caught.value) is ValueError


@pytest.mark.parametrize(
    ("method", "target", "headers", "match"),
    [
        ("POST", "/", [("X-Evil", "a\r\nInjected: yes")], "header 'X-Evil' holds a line break"),
        ("POST", "/", [("X-Nul", "a\x00b")], "header 'X-Nul' holds a line break or NUL"),
        ("POST", "/a b", [], "request target '/a b' holds a space"),
        ("POST", "/a\r\nHost: evil", [], "request target"),
        ("GET", "/", [("X Space", "1")], "header name 'X Space' is not a valid HTTP token"),
        ("GET", "/", [("X-Colon:", "1")], "header name 'X-Colon:' is not a valid HTTP token"),
        ("GET", "/", [("", "1")], "header name '' is not a valid HTTP token"),
        ("GET", "/", [("X-Break\r\n", "1")], "not a valid HTTP token"),
        ("GET /x HTTP/1.1\r\n", "/", [], "method"),
        ("", "/", [], "method '' is not a valid HTTP token"),
    ],
    ids=[
        "crlf-value",
        "nul-value",
        "space-target",
        "crlf-target",
        "space-name",
        "colon-name",
        "empty-name",
        "crlf-name",
        "crlf-method",
        "empty-method",
    ],
)
async def test_anything_that_could_start_another_line_or_request_is_refused(
    method: str, target: str, headers: list[tuple[str, str]], match: str
) -> None:
    pool = H1Pool(NOWHERE)
    with pytest.raises(ValueError, match=match):
        await pool.request(method, target, headers, b"{}")


async def test_a_valid_request_is_sent_exactly_as_given_and_names_are_checked_every_time() -> None:
    async with serving(keep_alive) as server:
        pool = H1Pool(server.url)
        headers = [("X-Latin", "caf\xe9"), ("authorization", "Bearer k"), ("X-Tab", "a\tb")]
        for _ in range(2):  # the second time, the names come from the cache of checked names
            await pool.request("PATCH", "/p?q=1", headers, b"{}")
            with pytest.raises(ValueError, match="'Host'"):
                await pool.request("PATCH", "/p?q=1", [("Host", "evil")], b"{}")
        await pool.request("GET", "/", [])
        await pool.aclose()
    sent = server.requests[0]
    assert sent == (
        b"PATCH /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Latin: caf\xe9\r\nauthorization: Bearer k\r\n"
        b"X-Tab: a\tb\r\nContent-Length: 2\r\n\r\n{}" % server.port
    )
    assert server.requests[2] == b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port, "no length, no body"


def test_an_international_host_name_travels_as_its_a_label() -> None:
    pool = H1Pool("http://b\u00fccher.example:8080/")
    assert pool._head("GET", "/", [], 0) == b"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example:8080\r\n\r\n"
    ipv6 = H1Pool("https://[::1]/")
    assert ipv6._head("GET", "/", [], 0) == b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"

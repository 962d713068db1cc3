"""The HTTP/1.1 client through a real forward proxy: CONNECT tunnels for http and https targets, NO_PROXY,
credentials, a proxy that refuses, hangs or is not there, and deadlines that still hold.

Runs on both event loops the hub uses: plain asyncio and uvloop (`agenthub serve`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from http1 import ConnectFailed, H1Pool, HttpError, Proxy
from llm.errors import ProviderUnavailable
from llm.testing import closed_port_url
from llm.transport import Transport
from tests.proxy.forward_proxy import forward_proxy
from tests.proxy.origin import origin, tls_contexts

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param(False, id="asyncio"), pytest.param(True, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return "asyncio", {"use_uvloop": request.param}


def answered(body: bytes) -> dict[str, str]:
    value = orjson.loads(body)
    assert isinstance(value, dict)
    return value


async def test_an_http_target_is_reached_through_a_connect_tunnel_when_http_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy() as proxy, origin() as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        pool = H1Pool(server.url(), clock=lambda: 0.0)  # idle connections stay fit for reuse, however slow the run
        for _ in range(3):
            response = await pool.request("POST", "/mcp", [("Content-Type", "application/json")], b"{}")
            assert response.status == 200
            assert answered(response.body) == {"line": "POST /mcp HTTP/1.1", "host": f"127.0.0.1:{server.port}"}
        await pool.aclose()
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}"], "one tunnel, kept alive for every request"
        await proxy.wait_idle()


async def test_an_https_target_is_tunnelled_with_tls_end_to_end_and_the_proxy_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server_ctx, client_ctx, _ = tls_contexts(tmp_path)
    async with forward_proxy(credentials=("alice", "s3cret:pw")) as proxy, origin(tls=server_ctx) as server:
        monkeypatch.setenv("https_proxy", f"http://alice:s3cret%3Apw@127.0.0.1:{proxy.port}")
        pool = H1Pool(server.url("localhost", tls=True), ssl_context=client_ctx)
        response = await pool.request("GET", "/mcp?x=1", [])
        assert answered(response.body) == {"line": "GET /mcp?x=1 HTTP/1.1", "host": f"localhost:{server.port}"}
        await pool.aclose()
    assert proxy.tunnels() == [f"localhost:{server.port}"]
    assert proxy.asked[0].authorization == "Basic " + base64.b64encode(b"alice:s3cret:pw").decode()


async def test_http_proxy_alone_does_not_apply_to_https_targets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server_ctx, client_ctx, _ = tls_contexts(tmp_path)
    async with forward_proxy() as proxy, origin(tls=server_ctx) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        pool = H1Pool(server.url("localhost", tls=True), ssl_context=client_ctx)
        assert (await pool.request("GET", "/", [])).status == 200
        await pool.aclose()
    assert proxy.asked == []


async def test_all_proxy_applies_to_both_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    async with forward_proxy() as proxy, origin() as server:
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        pool = H1Pool(server.url())
        assert (await pool.request("GET", "/", [])).status == 200
        await pool.aclose()
    assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]


@pytest.mark.parametrize(
    ("host", "no_proxy", "direct"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "10.0.0.0/8, 127.0.0.0/8", True),
        ("127.0.0.1", "127.0.0.1:{port}", True),
        ("127.0.0.1", "127.0.0.1:1", False),
        ("127.0.0.1", "*", True),
        ("127.0.0.1", "example.com", False),
        ("localhost", "localhost", True),
        ("localhost", ".localhost", False),
        ("localhost", "", False),
    ],
)
async def test_no_proxy_sends_matching_targets_direct(
    monkeypatch: pytest.MonkeyPatch, host: str, no_proxy: str, direct: bool
) -> None:
    async with forward_proxy() as proxy, origin() as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy.format(port=server.port))
        pool = H1Pool(server.url(host))
        assert (await pool.request("GET", "/", [])).status == 200
        await pool.aclose()
    assert proxy.tunnels() == ([] if direct else [f"{host}:{server.port}"])
    assert len(server.heads) == 1


async def test_the_proxy_argument_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with forward_proxy(answer=403) as refusing, forward_proxy() as proxy, origin() as server:
        monkeypatch.setenv("HTTP_PROXY", refusing.url)
        direct = H1Pool(server.url(), proxy=None)
        assert (await direct.request("GET", "/", [])).status == 200
        chosen = H1Pool(server.url(), proxy=Proxy.parse(proxy.url))
        assert (await chosen.request("GET", "/", [])).status == 200
        await direct.aclose()
        await chosen.aclose()
    assert refusing.asked == []
    assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]


@pytest.mark.parametrize("status", [403, 407, 502])
async def test_a_proxy_that_refuses_connect_is_an_error_naming_the_proxy_and_its_status(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    async with forward_proxy(answer=status) as proxy, origin() as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        pool = H1Pool(server.url())
        with pytest.raises(HttpError, match=rf"through proxy http://127\.0\.0\.1:{proxy.port}: .*{status}"):
            await pool.request("POST", "/mcp", [], b"{}")
        await proxy.wait_idle()
    assert server.heads == []


async def test_wrong_proxy_credentials_get_407_and_never_show_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async with forward_proxy(credentials=("alice", "right")) as proxy, origin() as server:
        monkeypatch.setenv("HTTP_PROXY", f"http://alice:wrong-secret@127.0.0.1:{proxy.port}")
        pool = H1Pool(server.url())
        with pytest.raises(HttpError, match="407") as caught:
            await pool.request("GET", "/", [])
    assert "wrong-secret" not in str(caught.value)
    assert "alice" not in str(caught.value)


async def test_an_unreachable_proxy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = closed_port_url()
    monkeypatch.setenv("HTTPS_PROXY", nowhere)
    pool = H1Pool("https://provider.invalid/v1")
    expected = rf"cannot connect to provider\.invalid through proxy {nowhere}: cannot reach the proxy"
    with pytest.raises(ConnectFailed, match=expected):
        await pool.request("GET", "/v1", [])


async def test_a_proxy_that_never_answers_connect_fails_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy(hang=True) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        pool = H1Pool("https://provider.invalid/v1", connect_timeout=0.5)
        with pytest.raises(ConnectFailed, match=r"through proxy http://127\.0\.0\.1:\d+: no answer within 0\.5s"):
            await pool.request("GET", "/v1", [])
        with anyio.fail_after(5):
            await proxy.asked_once.wait()
        await proxy.wait_idle()
    assert proxy.tunnels() == ["provider.invalid:443"]


async def test_the_request_deadline_holds_through_the_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    async with forward_proxy() as proxy, origin(answered=1) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        pool = H1Pool(server.url(), clock=lambda: 0.0)  # the idle tunnel stays fit for reuse
        assert (await pool.request("POST", "/mcp", [], b"{}")).status == 200
        with pytest.raises(TimeoutError):
            await pool.request("POST", "/mcp", [], b"{}", timeout=0.2)  # on the pooled tunnel: sent, never answered
        with anyio.fail_after(5):
            await server.holding.wait()
        await proxy.wait_idle()
    assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]
    assert len(server.heads) == 2, "sent once, never again"


async def test_a_certificate_the_client_does_not_trust_fails_inside_the_tunnel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server_ctx, _, _ = tls_contexts(tmp_path)
    async with forward_proxy() as proxy, origin(tls=server_ctx) as server:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        pool = H1Pool(server.url("localhost", tls=True))  # the system trust store
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            await pool.request("GET", "/", [])
        await proxy.wait_idle()
    assert proxy.tunnels() == [f"localhost:{server.port}"]
    assert server.heads == []


# -- proxies that answer CONNECT with something that is not a clean HTTP/1.1 answer


@asynccontextmanager
async def scripted_proxy(answer: bytes, *, close: bool) -> AsyncGenerator[str]:
    """A proxy that reads one request head, sends `answer` and then closes (or holds the connection)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            buffered = BufferedByteReceiveStream(stream)
            try:
                await buffered.receive_until(b"\r\n\r\n", 65536)
                await stream.send(answer)
                if not close:
                    async for _ in buffered:
                        pass
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("answer", "close", "error"),
    [
        pytest.param(b"", True, "closed the connection before answering CONNECT", id="closed"),
        pytest.param(
            b"HTTP/1.1 200 Connection established\r\n", True, "closed the connection before answering", id="cut"
        ),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, "not an HTTP answer", id="not-http"),
        pytest.param(b"HTTP/1.1 2x0 Whatever\r\n\r\n", False, "not an HTTP answer", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 10_000, False, "answer to CONNECT is too long", id="huge"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", False, "sent bytes after its answer", id="extra"
        ),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", False, "101", id="interim"),
        pytest.param(b"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\n\r\n", False, "301", id="redirect"),
    ],
)
async def test_a_connect_answer_that_is_not_a_clean_success_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, answer: bytes, close: bool, error: str
) -> None:
    async with scripted_proxy(answer, close=close) as proxy_url, origin() as server:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        pool = H1Pool(server.url(), connect_timeout=5)
        with pytest.raises(HttpError, match=error) as caught:
            await pool.request("GET", "/", [])
    assert f"through proxy {proxy_url}" in str(caught.value)
    assert server.heads == []


async def test_a_proxy_url_the_client_cannot_use_is_refused_when_the_pool_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:pw@127.0.0.1:1080")
    with pytest.raises(ValueError, match=r"HTTPS_PROXY: .*socks5") as caught:
        H1Pool("https://provider.invalid/v1")
    assert "pw" not in str(caught.value)


async def test_a_provider_transport_reports_an_unusable_proxy_setting_by_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:secret@127.0.0.1:1080")
    transport = Transport(max_response_bytes=1024)
    await transport.open()
    with pytest.raises(ProviderUnavailable, match=r"HTTPS_PROXY: socks5:// proxies are not supported") as caught:
        await transport.request("POST", "https://api.invalid/v1/chat", headers={}, body=b"{}", timeout=5)
    assert "secret" not in str(caught.value)
    await transport.aclose()

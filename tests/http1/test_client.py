"""The HTTP/1.1 client of the hot paths against scripted TCP servers: what it sends, what it reads, how it pools."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import anyio
import pytest

from http1 import BodyTooLarge, ConnectFailed, H1Pool, HttpError, default_ssl_context, ssl_context_for
from tests.http1.scripted import Peer, answering, chunk, keep_alive, response, serving

pytestmark = pytest.mark.anyio

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def test_sequential_requests_share_one_connection_and_send_what_was_asked() -> None:
    async def handler(peer: Peer) -> None:
        while True:
            await peer.read_request()
            await peer.send(response(b'{"ok":true}', extra=b"mcp-session-id: s1\r\n"))

    async with serving(handler) as server:
        pool = H1Pool(server.url)
        target = pool.target(server.url)
        for _ in range(5):
            answer = await pool.request("POST", target, [("Content-Type", "application/json")], b'{"a":1}')
            assert answer.status == 200 and answer.body == b'{"ok":true}'
            assert answer.header("mcp-session-id") == "s1" and answer.header("missing", "-") == "-"
        await pool.aclose()
        await server.all_ended()
    assert server.connections == 1 and len(server.requests) == 5
    assert target == "/mcp?x=1"
    first = server.requests[0]
    assert first.startswith(b"POST /mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)
    assert b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n" in first and first.endswith(b'{"a":1}')


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    async with serving(answering(chunked)) as server:
        pool = H1Pool(server.url)
        assert (await pool.request("GET", "/", [])).body == b"abcdefg"
        await pool.aclose()

    async def until_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of ", b"it")

    async with serving(until_close) as server:
        pool = H1Pool(server.url)
        assert (await pool.request("GET", "/", [])).body == b"all of it"
        assert (await pool.request("GET", "/", [])).body == b"all of it", "a closed connection is not reused"
        await pool.aclose()
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async with serving(answering(response(b"one"))) as server:  # answers once, then closes
        pool = H1Pool(server.url)
        assert (await pool.request("POST", "/", [], b"x")).body == b"one"
        await server.all_ended()
        # Whether or not the event loop has seen the close yet, the next request (not idempotent) gets its answer.
        assert (await pool.request("POST", "/", [], b"x")).body == b"one"
        await pool.aclose()
    assert server.connections == 2 and len(server.requests) == 2


async def test_broken_answers_raise_http_errors_and_the_pool_keeps_working() -> None:
    cases = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",  # then the connection closes
        b"",  # closes without a byte
    ]
    for raw in cases:
        async with serving(answering(raw), keep_alive) as server:
            pool = H1Pool(server.url)
            with pytest.raises(HttpError):
                await pool.request("POST", "/", [], b"{}")
            assert (await pool.request("POST", "/", [], b"{}")).body.startswith(b'{"echo":')
            await pool.aclose()
        assert len(server.requests) == 2

    async with serving(answering(response(b"x" * 2048))) as server:
        pool = H1Pool(server.url, max_body=1024)
        with pytest.raises(BodyTooLarge, match="larger than 1024"):
            await pool.request("POST", "/", [], b"{}")
        await pool.aclose()

    with pytest.raises(ConnectFailed, match="cannot connect"):
        await H1Pool("http://127.0.0.1:9/").request("GET", "/", [])


async def test_a_cancelled_request_closes_its_connection_and_frees_its_slot() -> None:
    async def holds(peer: Peer) -> None:
        await peer.read_request()
        await peer.hold()

    async with serving(holds) as server:
        pool = H1Pool(server.url, max_connections=1)
        with anyio.move_on_after(0.2):
            await pool.request("POST", "/", [], b"{}")
        assert not pool._idle, "the half-used connection was not pooled"
        with anyio.move_on_after(0.2) as scope:  # the single slot is free again: this request gets a connection
            await pool.request("POST", "/", [], b"{}")
        assert scope.cancelled_caught
        await pool.aclose()
        await server.all_ended(2)
    assert server.connections == 2 and all(peer.closed_by_client for peer in server.peers)


async def test_concurrent_requests_open_connections_up_to_the_limit() -> None:
    async with serving(keep_alive) as server:
        pool = H1Pool(server.url, max_connections=4)
        results: list[bytes] = []

        async def one() -> None:
            results.append((await pool.request("POST", "/", [], b"{}")).body)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
        await pool.aclose()
    assert len(results) == 40 and all(body.startswith(b'{"echo":') for body in results)
    assert 1 <= server.connections <= 4 and len(server.requests) == 40


async def test_header_values_with_line_breaks_are_refused() -> None:
    pool = H1Pool("http://127.0.0.1:9/mcp")
    with pytest.raises(ValueError, match="line break"):
        await pool.request("POST", "/", [("X-Evil", "a\r\nInjected: yes")], b"{}")
    with pytest.raises(ValueError, match="not an http"):
        H1Pool("ftp://example/")


async def test_https_with_a_trusted_certificate(tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    async with serving(keep_alive, tls=server_ctx) as server:
        pool = H1Pool(f"https://localhost:{server.port}/mcp", ssl_context=client_ctx)
        for _ in range(3):
            assert (await pool.request("POST", "/mcp", [], b"{}")).body.startswith(b'{"echo":')
        await pool.aclose()
    assert server.connections == 1

    async with serving(keep_alive, tls=server_ctx) as server:
        untrusting = H1Pool(f"https://localhost:{server.port}/mcp")  # the system trust store
        with pytest.raises(ConnectFailed, match="cannot connect"):
            await untrusting.request("POST", "/mcp", [], b"{}")
    assert not server.requests


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `localhost`: the server's context and a client context that trusts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


async def test_a_streamed_body_arrives_piece_by_piece_and_the_connection_is_reused() -> None:
    read = [anyio.Event() for _ in range(6)]

    async def events(peer: Peer) -> None:
        for stream in range(2):
            await peer.read_request()
            await peer.send(CHUNKED_HEAD)
            for n in range(3):
                await peer.send(chunk(b"data: %d\n\n" % n))
                await read[stream * 3 + n].wait()  # the next piece leaves once the client has read this one
            await peer.send(b"0\r\n\r\n")
        await peer.hold()

    async with serving(events) as server:
        pool = H1Pool(server.url)
        for stream in range(2):
            pieces: list[bytes] = []
            async with pool.stream("POST", "/", [], b"{}") as answer:
                assert answer.status == 200 and answer.header("content-type") == "text/event-stream"
                while (piece := await answer.next_chunk()) is not None:
                    read[stream * 3 + len(pieces)].set()
                    pieces.append(piece)
            assert b"".join(pieces) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n" and len(pieces) == 3
        await pool.aclose()
        await server.all_ended()
    assert server.connections == 1 and server.peers[0].closed_by_client


async def test_leaving_a_stream_early_closes_its_connection() -> None:
    async def endless(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD)
        while True:
            await peer.send(chunk(b"more"))
            await anyio.sleep(0.01)

    async with serving(endless) as server:
        pool = H1Pool(server.url)
        async with pool.stream("POST", "/", [], b"{}") as answer:
            assert await answer.next_chunk()
        assert not pool._idle
        async with pool.stream("POST", "/", [], b"{}") as answer:
            assert await answer.next_chunk()
        await pool.aclose()
        await server.all_ended(2)
    assert server.connections == 2 and all(peer.closed_by_client for peer in server.peers)


async def test_a_slow_reader_gets_every_byte_of_a_fast_stream() -> None:
    sent = [b"%05d" % n for n in range(2000)]

    async def flood(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + b"".join(chunk(piece) for piece in sent) + b"0\r\n\r\n")
        await peer.hold()

    async with serving(flood) as server:
        pool = H1Pool(server.url)
        received: list[bytes] = []
        async with pool.stream("GET", "/", []) as answer:
            while (piece := await answer.next_chunk()) is not None:
                received.append(piece)
                await anyio.sleep(0.001)  # a slow reader
        assert b"".join(received) == b"".join(sent)
        await pool.aclose()


async def test_a_stream_cut_off_in_the_middle_raises_on_the_next_read() -> None:
    got_first = anyio.Event()

    async def cut(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"partial"))
        await got_first.wait()

    async with serving(cut) as server:
        pool = H1Pool(server.url, max_body=1 << 20)
        async with pool.stream("POST", "/", [], b"{}") as answer:
            assert await answer.next_chunk() == b"partial"
            got_first.set()
            with pytest.raises(HttpError, match="middle of the response"):
                await answer.next_chunk()
        assert not pool._idle
        await pool.aclose()


async def test_a_streamed_body_past_the_limit_raises_body_too_large_even_once_the_connection_is_gone() -> None:
    first_read = anyio.Event()

    async def grows(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"x" * 600))
        await first_read.wait()
        await peer.send(chunk(b"y" * 600))
        await peer.hold()

    async with serving(grows) as server:
        pool = H1Pool(server.url, max_body=1000)
        async with pool.stream("POST", "/", [], b"{}") as answer:
            assert await answer.next_chunk() == b"x" * 600
            first_read.set()
            await server.all_ended()  # the client closed the connection as the body passed the limit
            with pytest.raises(BodyTooLarge):  # the reason, not "the connection closed in the middle"
                await answer.next_chunk()
        assert not pool._idle
        await pool.aclose()
    assert server.peers[0].closed_by_client


async def test_timeouts_fail_the_request_and_close_its_connection() -> None:
    async def silent(peer: Peer) -> None:
        await peer.read_request()
        await peer.hold()

    async def stalls_after_one_chunk(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(CHUNKED_HEAD + chunk(b"first"))
        await peer.hold()

    async with serving(silent) as server:
        pool = H1Pool(server.url)
        with pytest.raises(TimeoutError):
            await pool.request("POST", "/", [], b"{}", timeout=0.1)
        with pytest.raises(TimeoutError):
            async with pool.stream("POST", "/", [], b"{}", timeout=0.1):
                pass
        assert not pool._idle
        await pool.aclose()
        await server.all_ended()
    assert len(server.requests) == 2 and all(peer.closed_by_client for peer in server.peers)

    async with serving(stalls_after_one_chunk) as server:
        pool = H1Pool(server.url)
        async with pool.stream("POST", "/", [], b"{}", timeout=1) as answer:
            assert await answer.next_chunk(5) == b"first"
            with pytest.raises(TimeoutError):
                await answer.next_chunk(0.1)
        assert not pool._idle
        await pool.aclose()
        await server.all_ended()
    assert server.peers[0].closed_by_client


def test_plain_http_clients_get_a_context_that_trusts_nothing() -> None:
    assert ssl_context_for("https://mcp.example.test/mcp") is default_ssl_context()
    plain = ssl_context_for("http://127.0.0.1:9001/mcp")
    assert plain is not default_ssl_context()
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0, "no trust store: any TLS handshake fails closed"

"""An origin server for the proxy tests: plain or TLS on 127.0.0.1, answering each request with what it saw."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream


class Origin:
    """The running origin: its port and the request heads it read (request line first)."""

    def __init__(self, port: int, *, answered: int | None) -> None:
        self.port = port
        self.heads: list[list[str]] = []
        self.holding = anyio.Event()
        """Set when a request arrived that the origin will never answer."""
        self._answered = answered

    def url(self, host: str = "127.0.0.1", *, tls: bool = False, path: str = "/mcp") -> str:
        return f"{'https' if tls else 'http'}://{host}:{self.port}{path}"

    def request_lines(self) -> list[str]:
        return [head[0] for head in self.heads]

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        buffered = BufferedByteReceiveStream(stream)
        while True:
            head = (await buffered.receive_until(b"\r\n\r\n", 65536)).decode("latin-1").split("\r\n")
            self.heads.append(head)
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length:
                await buffered.receive_exactly(length)
            if self._answered is not None and len(self.heads) > self._answered:
                self.holding.set()
                async for _ in buffered:  # hold the request: read until the client gives up
                    pass
                return
            host = next((line.partition(":")[2].strip() for line in head[1:] if line.lower().startswith("host:")), "")
            body = orjson.dumps({"line": head[0], "host": host})
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )


@asynccontextmanager
async def origin(*, tls: ssl.SSLContext | None = None, answered: int | None = None) -> AsyncGenerator[Origin]:
    """Serve on a free 127.0.0.1 port (TLS with `tls`) until the block ends; with `answered`, the requests after
    that many (over all connections) are held and never answered."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = Origin(listener.extra(anyio.abc.SocketAttribute.local_port), answered=answered)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        try:
            async with stream:
                conn: anyio.abc.ByteStream = stream
                if tls is not None:
                    conn = await TLSStream.wrap(stream, server_side=True, ssl_context=tls, standard_compatible=False)
                await server.handle(conn)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except (ssl.SSLError, OSError):
            pass  # a client that refused the certificate or went away

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    """A self-signed certificate for `localhost`: the server's context, a client context that trusts it, and the
    certificate file (a CA bundle holding just it)."""
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
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
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
    return server_ctx, client_ctx, cert_file

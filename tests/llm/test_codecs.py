"""SSE and AWS event-stream framing, SigV4 test vectors, and the Vertex JWT."""

from __future__ import annotations

import base64
import struct
import zlib
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from llm.errors import ConfigError, ProviderResponseError
from llm.eventstream import EventStreamDecoder, encode_event
from llm.gcp_auth import sign_jwt
from llm.sigv4 import SigV4Signer
from llm.sse import SSEDecoder, SSEEvent, encode_sse


def test_sse_decoder_joins_events_split_across_chunks_and_crlf() -> None:
    raw = b'event: ping\r\ndata: {"a":\r\ndata: 1}\r\n\r\n: comment\n\ndata: [DONE]\n\n'
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for i in range(len(raw)):
        events.extend(decoder.feed(raw[i : i + 1]))
    assert events == [SSEEvent("ping", '{"a":\n1}'), SSEEvent("message", "[DONE]")]


def test_sse_decoder_refuses_an_endless_line() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(ProviderResponseError):
        decoder.feed(b"data: " + b"x" * 200)


def test_sse_encoder_round_trips() -> None:
    assert SSEDecoder().feed(encode_sse(b'{"x":1}', event="e")) == [SSEEvent("e", '{"x":1}')]


def test_event_stream_round_trips_byte_by_byte() -> None:
    frames = encode_event({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}')
    frames += encode_event({":event-type": "messageStop"}, b"{}")
    decoder = EventStreamDecoder()
    messages = []
    for i in range(len(frames)):
        messages.extend(decoder.feed(frames[i : i + 1]))
    assert [m.header(":event-type") for m in messages] == ["messageStart", "messageStop"]
    assert messages[0].payload == b'{"role":"assistant"}'
    assert decoder.pending == 0


def test_event_stream_decodes_every_header_type() -> None:
    headers = (
        b"\x01a\x00"  # bool true
        + b"\x01b\x01"  # bool false
        + b"\x01c\x02\x05"  # byte
        + b"\x01d\x03\x00\x07"  # short
        + b"\x01e\x04\x00\x00\x00\x09"  # int
        + b"\x01f\x05"
        + struct.pack(">q", 11)  # long
        + b"\x01g\x06\x00\x02hi"  # bytes
        + b"\x01h\x08"
        + struct.pack(">q", 13)  # timestamp
        + b"\x01i\x09"
        + bytes(range(16))  # uuid
    )
    total = 12 + len(headers) + 4
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    frame = head + struct.pack(">I", zlib.crc32(head))
    (message,) = EventStreamDecoder().feed(frame)
    assert message.headers == {
        "a": True,
        "b": False,
        "c": 5,
        "d": 7,
        "e": 9,
        "f": 11,
        "g": b"hi",
        "h": 13,
        "i": bytes(range(16)),
    }
    assert message.header("a") == ""


def test_event_stream_rejects_a_corrupt_message_checksum() -> None:
    frame = bytearray(encode_event({":event-type": "x"}, b'{"text":"hello"}'))
    frame[-6] ^= 0xFF  # flip a payload byte
    with pytest.raises(ProviderResponseError, match="message checksum"):
        EventStreamDecoder().feed(bytes(frame))


def test_event_stream_rejects_a_corrupt_prelude() -> None:
    frame = bytearray(encode_event({":event-type": "x"}, b"{}"))
    frame[2] ^= 0x01
    with pytest.raises(ProviderResponseError, match="prelude checksum"):
        EventStreamDecoder().feed(bytes(frame))


# The AWS SigV4 test suite: credentials AKIDEXAMPLE, 2015-08-30T12:36:00Z, us-east-1, service "service".
_SUITE = SigV4Signer(
    access_key_id="AKIDEXAMPLE",
    secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    region="us-east-1",
    service="service",
)
_WHEN = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        ("https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_sigv4_matches_the_aws_test_suite(url: str, signature: str) -> None:
    headers = _SUITE.sign("GET", url, {}, b"", now=_WHEN)
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )
    assert headers["x-amz-date"] == "20150830T123600Z"


def test_sigv4_double_encodes_the_path_for_non_s3_services_and_adds_the_session_token() -> None:
    signer = SigV4Signer(
        access_key_id="AK", secret_access_key="S", region="us-east-1", service="bedrock", session_token="TOKEN"
    )
    a = signer.sign("POST", "https://h/model/a%3Ab/converse", {}, b"{}", now=_WHEN)
    b = signer.sign("POST", "https://h/model/a:b/converse", {}, b"{}", now=_WHEN)
    assert a["authorization"] != b["authorization"]
    assert a["x-amz-security-token"] == "TOKEN"
    assert "x-amz-security-token" in a["authorization"]
    assert "S" not in repr(signer).replace("SigV4Signer", "")


def test_jwt_is_rs256_and_verifies_with_the_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = sign_jwt({"iss": "sa@example.iam", "aud": "http://127.0.0.1/token"}, pem)
    head, claims, sig = token.split(".")

    def unb64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert orjson.loads(unb64(head)) == {"alg": "RS256", "typ": "JWT"}
    assert orjson.loads(unb64(claims))["iss"] == "sa@example.iam"
    key.public_key().verify(unb64(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_jwt_refuses_a_bad_key_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        sign_jwt({}, "-----BEGIN PRIVATE KEY-----\nNOTAKEY\n-----END PRIVATE KEY-----")
    assert "NOTAKEY" not in str(info.value)

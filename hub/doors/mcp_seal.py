"""Sealed MCP session ids: a handshake-era session any replica can rebuild on first sight.

A handshake-era session is opened by `initialize` on one replica; behind a load balancer without sticky sessions
its next request lands on another. The id the hub hands out carries, encrypted and authenticated with AES-GCM
under a key every replica derives from `AGENTHUB_MASTER_KEY` (HKDF, its own `info` label), what a replica needs to
serve the session without having seen it: the virtual key it is bound to, the endpoint (`/mcp` or `/mcp/{server}`)
it was opened on, the negotiated protocol version, the client's `initialize` parameters (capabilities, client
info) and when it was opened and expires. Nothing is looked up to rebuild it; a forged, altered or expired id
opens nothing. Encryption (rather than a MAC alone) keeps the key id and client details out of proxy logs.

Format: `s1.` + base64url(12-byte nonce + ciphertext + tag), no padding: visible ASCII, as the protocol asks.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "s1."
"""Marks a sealed id (and its format version)."""
MAX_SEALED = 8192
"""The longest id unsealed (a client's capabilities and info are small; anything longer is refused unread)."""
_INFO = b"agenthub mcp session seal v1"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What a replica needs to rebuild a handshake-era session."""

    key_id: str
    """The virtual key the session is bound to (the SDK refuses the session to any other key)."""
    endpoint: str | None
    """The server of `/mcp/{server}`, or None for the aggregated `/mcp`."""
    protocol_version: str
    client: dict[str, Any]
    """The client's `initialize` params (`protocolVersion`, `capabilities`, `clientInfo`), as it sent them."""
    opened: float
    """Unix time the session was opened."""
    expires: float
    """Unix time after which the id opens nothing."""

    def _wire(self) -> dict[str, Any]:
        return {
            "k": self.key_id,
            "e": self.endpoint,
            "v": self.protocol_version,
            "c": self.client,
            "o": self.opened,
            "x": self.expires,
        }


class SessionSeal:
    """Seals and opens session ids with one shared key."""

    def __init__(self, master_key: str) -> None:
        key = HKDF(hashes.SHA256(), 32, salt=None, info=_INFO).derive(master_key.encode())
        self._aead = AESGCM(key)

    def seal(self, facts: SessionFacts) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, orjson.dumps(facts._wire()), PREFIX.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, session_id: str, now: float) -> SessionFacts | None:
        """The facts sealed in `session_id`, or None: not sealed with this key, altered, malformed or expired."""
        if not session_id.startswith(PREFIX) or len(session_id) > MAX_SEALED:
            return None
        text = session_id[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], PREFIX.encode())
        except InvalidTag:
            return None
        facts = _facts(orjson.loads(plain))
        if facts is None or facts.expires <= now:
            return None
        return facts


def _facts(wire: Any) -> SessionFacts | None:
    """The facts of a decrypted payload (which only a replica wrote; checked anyway, as any input)."""
    if not isinstance(wire, dict):
        return None
    key_id, endpoint, version = wire.get("k"), wire.get("e"), wire.get("v")
    client, opened, expires = wire.get("c"), wire.get("o"), wire.get("x")
    if not (isinstance(key_id, str) and isinstance(version, str) and isinstance(client, dict)):
        return None
    if endpoint is not None and not isinstance(endpoint, str):
        return None
    if not (isinstance(opened, int | float) and isinstance(expires, int | float)):
        return None
    return SessionFacts(key_id, endpoint, version, client, float(opened), float(expires))

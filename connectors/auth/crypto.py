"""Tokens at rest: AES-256-GCM under a key derived (HKDF-SHA256) from the master key.

Each sealed value is `v1.` + base64url(nonce || ciphertext || tag); the associated data binds it to its row
(upstream, subject, kind), so a ciphertext copied into another row does not open. A key check value (an HMAC
under a second derived key) is stored beside the data, so a wrong master key is refused at start-up instead of
failing on the first token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connectors.auth.errors import MasterKeyError

MASTER_KEY_ENV = "AGENTHUB_MASTER_KEY"
MIN_MASTER_KEY_CHARS = 32
_PREFIX = "v1."


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"agenthub/upstream-auth", info=info).derive(master)


class TokenCipher:
    """Seal and open secrets with a key derived from the master key."""

    def __init__(self, master_key: str) -> None:
        """Derive the keys.

        Raises:
            MasterKeyError: the master key is shorter than 32 characters.
        """
        if len(master_key) < MIN_MASTER_KEY_CHARS:
            raise MasterKeyError(
                f"{MASTER_KEY_ENV} must be at least {MIN_MASTER_KEY_CHARS} characters "
                "(for example the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        master = master_key.encode("utf-8")
        self._aead = AESGCM(_derive(master, b"tokens v1"))
        self._check_key = _derive(master, b"key check v1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenCipher:
        """The cipher for `AGENTHUB_MASTER_KEY`.

        Raises:
            MasterKeyError: the variable is not set or too short.
        """
        env = os.environ if environ is None else environ
        value = env.get(MASTER_KEY_ENV)
        if not value:
            raise MasterKeyError(f"{MASTER_KEY_ENV} is not set: it is needed to encrypt upstream OAuth tokens at rest")
        return cls(value)

    def seal(self, plaintext: bytes, context: str) -> str:
        """Encrypt `plaintext`, bound to `context` (e.g. `token|server|subject`)."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode("utf-8"))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, context: str) -> bytes:
        """Decrypt a value sealed for the same `context`.

        Raises:
            MasterKeyError: the value does not open under this key and context.
        """
        if not sealed.startswith(_PREFIX):
            raise MasterKeyError("a stored token has an unknown format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode("utf-8"))
        except (InvalidTag, ValueError):
            raise MasterKeyError("a stored token does not decrypt: wrong master key or tampered row") from None

    def key_check_value(self) -> str:
        """A value to store once and compare at each start (reveals nothing about the key)."""
        return hmac.new(self._check_key, b"agenthub key check", hashlib.sha256).hexdigest()[:32]

    def verify_key_check_value(self, stored: str) -> None:
        """Compare with a stored key check value.

        Raises:
            MasterKeyError: the master key is not the one the stored tokens were sealed with.
        """
        if not hmac.compare_digest(stored, self.key_check_value()):
            raise MasterKeyError(
                f"{MASTER_KEY_ENV} is not the key the stored upstream tokens were encrypted with "
                "(restore the previous key, or delete the stored upstream tokens to start over)"
            )

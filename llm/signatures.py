"""Thinking signatures across providers: which provider can verify one, and how Gemini's travel through the Anthropic
Messages and Chat Completions shapes.

A signature is the provider's opaque proof that it produced a piece of reasoning; it must come back unchanged on the
next turn, and only the provider that issued it can check it.

- Anthropic's signatures (on Anthropic, and Claude on Bedrock, whose signatures Anthropic documents as valid across
  its platforms) travel as they are: a `thinking` block's `signature`, a `redacted_thinking` block's `data`.
- Gemini's `thoughtSignature` on a thought part becomes the `thinking` block's `signature` marked `gemini:`, so that
  no other provider is ever sent one (the Anthropic pass-through and the other translations leave such blocks out)
  and the Gemini provider puts it back on a thought part.
- Gemini's `thoughtSignature` on a function-call part (which Gemini 3 requires back, or it refuses the turn) has no
  field in Anthropic's `tool_use` block, and the client may not have asked for thinking at all; so it travels in the
  call's id, `<id>__thought_<the signature in URL-safe base64, unpadded>`, which every client sends back unchanged
  with the `tool_use` block and its `tool_result` (and which stays within Anthropic's id alphabet).
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["GEMINI_PREFIX", "call_signature", "from_gemini", "is_gemini", "signed_call_id", "to_gemini"]

GEMINI_PREFIX = "gemini:"
_ID_MARK = "__thought_"


def is_gemini(signature: object) -> bool:
    """Whether a `thinking` block's signature is a Gemini thought signature."""
    return isinstance(signature, str) and signature.startswith(GEMINI_PREFIX)


def from_gemini(signature: str) -> str:
    """A Gemini thought signature as a `thinking` block's signature."""
    return GEMINI_PREFIX + signature


def to_gemini(signature: object) -> str | None:
    """The Gemini thought signature a `thinking` block's signature carries, None when it carries none."""
    return signature[len(GEMINI_PREFIX) :] if is_gemini(signature) and isinstance(signature, str) else None


def signed_call_id(call_id: str, signature: str) -> str:
    """A tool call's id carrying the function call's thought signature."""
    encoded = base64.urlsafe_b64encode(signature.encode()).rstrip(b"=").decode()
    return f"{call_id}{_ID_MARK}{encoded}"


def call_signature(call_id: object) -> str | None:
    """The thought signature a tool call's id carries (`signed_call_id`), None when it carries none."""
    if not isinstance(call_id, str):
        return None
    _, mark, encoded = call_id.partition(_ID_MARK)
    if not mark or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return decoded or None

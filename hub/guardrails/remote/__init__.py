"""Adapters for external content-safety services, each async over one shared httpx2 client."""

from __future__ import annotations

import httpx2

from ..config import GuardrailConfig
from ..verdict import GuardrailConfigError
from .azure import AzureContentSafety
from .base import RemoteGuardrail, RemoteResult
from .bedrock import BedrockGuardrail
from .model_armor import ModelArmorGuardrail
from .patronus import PatronusGuardrail
from .sigv4 import AwsCredentials, sign_request

__all__ = [
    "AwsCredentials",
    "AzureContentSafety",
    "BedrockGuardrail",
    "ModelArmorGuardrail",
    "PatronusGuardrail",
    "RemoteGuardrail",
    "RemoteResult",
    "build_remote",
    "sign_request",
]


def build_remote(cfg: GuardrailConfig, client: httpx2.AsyncClient) -> RemoteGuardrail:
    """The adapter for a remote guardrail kind.

    Raises:
        GuardrailConfigError: the kind is not remote, or a credential reference cannot be read.
    """
    adapters = {
        "bedrock": BedrockGuardrail,
        "azure": AzureContentSafety,
        "model_armor": ModelArmorGuardrail,
        "patronus": PatronusGuardrail,
    }
    adapter = adapters.get(cfg.kind)
    if adapter is None:
        raise GuardrailConfigError(f"guardrail {cfg.name!r}: {cfg.kind} is not a remote service")
    try:
        return adapter(cfg, client)
    except (ValueError, OSError) as exc:
        raise GuardrailConfigError(f"guardrail {cfg.name!r}: {exc}") from exc

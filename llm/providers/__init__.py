"""One module per wire API; `build_provider` picks the class for a provider's `kind`."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from llm.config import ProviderConfig
from llm.providers.base import Credential, Provider
from llm.transport import Transport

if TYPE_CHECKING:
    from llm.providers.anthropic import AnthropicProvider
    from llm.providers.azure import AzureOpenAIProvider
    from llm.providers.bedrock import BedrockProvider
    from llm.providers.gemini import GeminiProvider
    from llm.providers.openai import OpenAIProvider

__all__ = [
    "PROVIDER_CLASSES",
    "AnthropicProvider",
    "AzureOpenAIProvider",
    "BedrockProvider",
    "Credential",
    "GeminiProvider",
    "OpenAIProvider",
    "Provider",
    "build_provider",
    "provider_class",
]

PROVIDER_CLASSES: dict[str, tuple[str, str]] = {
    "openai": ("openai", "OpenAIProvider"),
    "openai-compatible": ("openai", "OpenAIProvider"),
    "azure": ("azure", "AzureOpenAIProvider"),
    "anthropic": ("anthropic", "AnthropicProvider"),
    "gemini": ("gemini", "GeminiProvider"),
    "bedrock": ("bedrock", "BedrockProvider"),
}
"""Module and class per `kind`; a provider's module loads when the first provider of its kind is built."""


def provider_class(kind: str) -> type[Provider]:
    """The class for a provider `kind`."""
    module, name = PROVIDER_CLASSES[kind]
    cls: type[Provider] = getattr(import_module(f"llm.providers.{module}"), name)
    return cls


def __getattr__(name: str) -> Any:
    """The provider classes by name (their modules load on first use)."""
    for module, cls in PROVIDER_CLASSES.values():
        if cls == name:
            return getattr(import_module(f"llm.providers.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The provider object for `config.kind`, with its own pooled transport (not yet open)."""
    transport = Transport(
        max_connections=config.max_connections,
        connect_timeout=config.connect_timeout,
        max_response_bytes=config.max_response_bytes,
    )
    return provider_class(config.kind)(name, config, transport)

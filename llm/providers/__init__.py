"""One module per wire API; `build_provider` picks the class for a provider's `kind`."""

from __future__ import annotations

from llm.config import ProviderConfig
from llm.providers.anthropic import AnthropicProvider
from llm.providers.azure import AzureOpenAIProvider
from llm.providers.base import Credential, Provider
from llm.providers.bedrock import BedrockProvider
from llm.providers.gemini import GeminiProvider
from llm.providers.openai import OpenAIProvider
from llm.transport import Transport

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
]

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "openai-compatible": OpenAIProvider,
    "azure": AzureOpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "bedrock": BedrockProvider,
}


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The provider object for `config.kind`, with its own pooled transport (not yet open)."""
    transport = Transport(
        max_connections=config.max_connections,
        connect_timeout=config.connect_timeout,
        max_response_bytes=config.max_response_bytes,
    )
    return PROVIDER_CLASSES[config.kind](name, config, transport)

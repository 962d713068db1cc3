"""AgentHub's LLM back end: OpenAI-shaped requests routed to many providers, governance-free.

Build a `Router` from `load_config(...)`, open it once (`async with router`), then call `chat`,
`stream_chat`, `embeddings`, `responses`, `stream_responses` and `list_models`. Results carry the hop that
served (`provider`, `model`, `key`), every attempt, token usage and cost. See `docs/llm.md`.

`Router` (and with it the providers and their HTTP client) loads on first use: the configuration, error and
result types are all a program needs until it routes a request.
"""

import typing as _typing

from llm.config import LLMConfig, load_config, resolve_secret
from llm.errors import (
    Attempt,
    ConfigError,
    LLMError,
    NoDeploymentAvailable,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    UnknownModel,
    UnsupportedOperation,
    UnsupportedParameter,
)
from llm.pricing import Price
from llm.rawjson import RawJSON
from llm.result import Hop, HopFilter, ModelInfo, Result, ResultStream
from llm.schema import InvalidRequest, Usage, validate_chat_request

__all__ = [
    "Attempt",
    "ConfigError",
    "Hop",
    "HopFilter",
    "InvalidRequest",
    "LLMConfig",
    "LLMError",
    "ModelInfo",
    "NoDeploymentAvailable",
    "Price",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RawJSON",
    "Result",
    "ResultStream",
    "Router",
    "UnknownModel",
    "UnsupportedOperation",
    "UnsupportedParameter",
    "Usage",
    "load_config",
    "resolve_secret",
    "validate_chat_request",
]

if _typing.TYPE_CHECKING:
    from llm.router import Router


def __getattr__(name: str) -> object:
    """Load the router on first use."""
    if name != "Router":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from llm.router import Router as router

    globals()["Router"] = router
    return router

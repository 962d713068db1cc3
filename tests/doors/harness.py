"""The hub in front of the `llm` fakes: one fake server per wire format (OpenAI, Azure, Anthropic, Gemini,
Bedrock), each scriptable, and a hub config whose providers point at them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from llm.testing import FakeScript, anthropic_app, bedrock_app, gemini_app, openai_app, serve
from tests.hub.harness import ALICE, RunningHub, running_hub
from tests.tools.patience import PATIENCE

OPENAI_SECRET = "sk-openai-main-0001"
OPENAI_SPARE = "sk-openai-spare-0002"
AZURE_SECRET = "az-key-0003"
ANTHROPIC_SECRET = "sk-ant-0004"
GEMINI_SECRET = "gm-key-0005"
AWS_KEY_ID = "AKIDEXAMPLE0006"
AWS_SECRET = "aws-secret-0007"
ENV = {
    "T_OPENAI": OPENAI_SECRET,
    "T_OPENAI_SPARE": OPENAI_SPARE,
    "T_AZURE": AZURE_SECRET,
    "T_ANTHROPIC": ANTHROPIC_SECRET,
    "T_GEMINI": GEMINI_SECRET,
    "T_AWS_ID": AWS_KEY_ID,
    "T_AWS_SECRET": AWS_SECRET,
}
MODELS = {
    "openai": "gpt-4o-mini",
    "azure": "gpt-4o",
    "anthropic": "claude-3-5-haiku",
    "gemini": "gemini-2.0-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
PRICES = {f"{p}/{m}": {"input": 1000.0, "output": 2000.0} for p, m in MODELS.items()}
"""USD per million tokens: a default fake reply (12 prompt tokens, 1 completion token) costs 0.014 USD."""

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def error_of(exc: openai.APIError) -> dict[str, Any]:
    """The OpenAI error envelope's inner object of an SDK error."""
    body = exc.body
    assert isinstance(body, dict)
    return cast(dict[str, Any], body)


FAST_ROUTING = {"max_retries": 1, "backoff_initial": 0.01, "backoff_max": 0.05, "max_retry_after": 1.0}


@dataclass
class Fakes:
    """The running fakes: a script per provider name and the `[providers]` table pointing at them."""

    scripts: dict[str, FakeScript] = field(default_factory=dict[str, FakeScript])
    providers: dict[str, Any] = field(default_factory=dict[str, Any])

    def requests(self, provider: str) -> int:
        return len(self.scripts[provider].requests)


@contextlib.asynccontextmanager
async def running_fakes(**provider_extra: dict[str, Any]) -> AsyncGenerator[Fakes]:
    """Start the five fakes. `provider_extra` adds settings to a provider's table (e.g. timeouts)."""
    fakes = Fakes({name: FakeScript() for name in MODELS})
    s = fakes.scripts
    async with (
        serve(openai_app(s["openai"], keys=[OPENAI_SECRET, OPENAI_SPARE])) as oa,
        serve(openai_app(s["azure"], keys=[AZURE_SECRET], api_version="2024-10-21")) as az,
        serve(anthropic_app(s["anthropic"], keys=[ANTHROPIC_SECRET])) as an,
        serve(gemini_app(s["gemini"], keys=[GEMINI_SECRET])) as gm,
        serve(
            bedrock_app(s["bedrock"], access_key_id=AWS_KEY_ID, secret_access_key=AWS_SECRET, region="us-east-1")
        ) as br,
    ):
        fakes.providers = {
            "openai": {
                "kind": "openai",
                "base_url": f"{oa}/v1",
                "keys": [{"name": "main", "secret": "env:T_OPENAI"}, {"name": "spare", "secret": "env:T_OPENAI_SPARE"}],
                "models": [MODELS["openai"]],
            },
            "azure": {
                "kind": "azure",
                "base_url": az,
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o": "prod-4o"},
                "keys": [{"name": "az", "secret": "env:T_AZURE"}],
            },
            "anthropic": {
                "kind": "anthropic",
                "base_url": an,
                "keys": [{"name": "main", "secret": "env:T_ANTHROPIC"}],
                "models": [MODELS["anthropic"]],
            },
            "gemini": {"kind": "gemini", "base_url": f"{gm}/v1beta", "keys": [{"secret": "env:T_GEMINI"}]},
            "bedrock": {
                "kind": "bedrock",
                "region": "us-east-1",
                "base_url": br,
                "keys": [{"name": "aws", "access_key_id": "env:T_AWS_ID", "secret": "env:T_AWS_SECRET"}],
            },
        }
        for name, extra in provider_extra.items():
            fakes.providers[name].update(extra)
        yield fakes


def llm_config(
    fakes: Fakes,
    keys: list[dict[str, Any]] | None = None,
    *,
    models: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A hub config with no MCP servers, the fakes as providers and `keys` (default: alice may use anything)."""
    return {
        "hub": {"upstream_start_timeout_s": 5},
        "servers": {},
        "keys": keys if keys is not None else [{"name": "alice", "secret": ALICE, "models": ["*"]}],
        "providers": fakes.providers,
        "models": models or {"fast": {"deployments": [{"provider": "openai", "model": MODELS["openai"]}]}},
        "prices": PRICES,
        "routing": routing or FAST_ROUTING,
        **extra,
    }


@contextlib.asynccontextmanager
async def hub_with_fakes(
    tmp_path: Path, fakes: Fakes, keys: list[dict[str, Any]] | None = None, **kwargs: Any
) -> AsyncGenerator[RunningHub]:
    async with running_hub(llm_config(fakes, keys, **kwargs), tmp_path) as hub:
        yield hub


def async_client(hub: RunningHub, key: str = ALICE) -> openai.AsyncOpenAI:
    """The official SDK pointed at the hub, without its own retries (the tests count attempts)."""
    return openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=key, max_retries=0, timeout=PATIENCE)


def sync_client(hub: RunningHub, key: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(base_url=hub.url("/v1"), api_key=key, max_retries=0, timeout=PATIENCE)

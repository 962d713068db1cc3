"""Configuration validation, secret references and the price table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm.config import PriceConfig, load_config, resolve_secret
from llm.errors import ConfigError
from llm.pricing import Price, PriceTable
from llm.schema import InvalidRequest, Usage, validate_chat_request

from .conftest import SECRET

TOML = """
[providers.openai]
kind = "openai"
keys = [ { name = "main", secret = "env:T_KEY", weight = 3 },
         { name = "spare", secret = "env:T_KEY2", weight = 1 } ]
[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11434/v1"
[models.fast]
deployments = [ { provider = "openai", model = "gpt-4o-mini", weight = 1 },
                { provider = "local", model = "llama3", weight = 1 } ]
fallbacks = ["local/llama3"]
"""


def test_the_issue_example_parses_with_defaults() -> None:
    config = load_config(TOML)
    assert config.providers["openai"].resolved_base_url() == "https://api.openai.com/v1"
    assert [k.weight for k in config.providers["openai"].keys] == [3, 1]
    assert config.models["fast"].fallbacks == ("local/llama3",)
    assert config.providers["local"].keys == ()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"providers": {"a": {"kind": "azure", "base_url": "http://x", "keys": [{"secret": "env:X"}]}}}, "api_version"),
        ({"providers": {"a": {"kind": "bedrock", "keys": [{"secret": "env:X", "access_key_id": "env:Y"}]}}}, "region"),
        (
            {"providers": {"a": {"kind": "bedrock", "region": "us-east-1", "keys": [{"secret": "env:X"}]}}},
            "access_key_id",
        ),
        ({"providers": {"a": {"kind": "openai", "keys": [{"secret": "sk-literal"}]}}}, "reference"),
        ({"providers": {"a": {"kind": "openai"}}}, "at least one key"),
        ({"providers": {"a/b": {"kind": "openai-compatible", "base_url": "http://x"}}}, "no '/'"),
        ({"providers": {}, "models": {"m": {"deployments": [{"provider": "nope", "model": "x"}]}}}, "unknown provider"),
        (
            {
                "providers": {"p": {"kind": "openai-compatible", "base_url": "http://x"}},
                "models": {"m": {"deployments": [{"provider": "p", "model": "x"}], "fallbacks": ["q/y"]}},
            },
            "neither an alias",
        ),
        ({"providers": {"a": {"kind": "openai", "keys": [{"secret": "env:X"}], "colour": 1}}}, "colour"),
    ],
)
def test_invalid_configurations_are_refused_with_the_reason(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(mapping)


def test_secret_references_resolve_from_env_and_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("file-secret\n")
    assert resolve_secret("env:T_KEY") == SECRET
    assert resolve_secret(f"file:{path}") == "file-secret"


@pytest.mark.parametrize("ref", ["env:T_MISSING_VAR", "file:/nonexistent/key", "sk-literal-value", "vault:x"])
def test_unresolvable_secrets_raise_without_any_value(ref: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_secret(ref)
    assert "sk-literal-value" not in str(info.value)


def test_prices_come_from_the_table_overrides_and_dated_ids() -> None:
    table = PriceTable({"openai/gpt-4o": PriceConfig(input=1, output=2), "my-model": PriceConfig(input=5, output=5)})
    assert table.price("openai", "gpt-4o") == Price(1, 2, 0.5, 1, 1)  # cache rates by OpenAI's convention
    assert table.price("azure", "gpt-4o") == Price(2.5, 10.0, 1.25, 2.5, 2.5)
    assert table.price("openai", "gpt-4o-mini-2024-07-18") == Price(0.15, 0.6, 0.075, 0.15, 0.15)
    assert table.price("bedrock", "us.anthropic.claude-3-haiku-20240307-v1:0") == Price(0.25, 1.25, 0.03, 0.3, 0.5)
    assert table.price("x", "my-model") == Price(5, 5, 5, 5, 5)
    assert table.price("x", "unknown-model") is None
    assert Price(3, 15).cost(Usage(1_000_000, 100_000)) == pytest.approx(4.5)


def test_shipped_table_has_a_few_dozen_models() -> None:
    from llm.pricing import load_shipped_prices

    assert len(load_shipped_prices()) >= 36


def test_validate_chat_request_names_the_bad_field() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert validate_chat_request(body) is body
    with pytest.raises(InvalidRequest, match="messages"):
        validate_chat_request({"model": "m", "messages": []})
    with pytest.raises(InvalidRequest, match="role"):
        validate_chat_request({"model": "m", "messages": [{"role": "wizard"}]})
    with pytest.raises(InvalidRequest):
        validate_chat_request([1])

"""`GET /v1/models` lists exactly the configured models a chat request of the key may use.

For several keys (exact names, wildcards, provider filters, an alias reachable only through its fallbacks, an alias
whose fallback is another alias, aliases naming one `provider/model`, denied models), every configured alias and
`provider/model` name is asked for three ways with the official SDK: in the list, by `GET /v1/models/{id}` and
by a chat request. The three answers agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.doors.harness import MODELS, USER, async_client, hub_with_fakes, running_fakes

pytestmark = pytest.mark.anyio

ALIASES: dict[str, Any] = {
    "fast": {
        "deployments": [{"provider": "openai", "model": MODELS["openai"]}],
        "fallbacks": [f"anthropic/{MODELS['anthropic']}"],
    },
    "smart": {"deployments": [{"provider": "anthropic", "model": MODELS["anthropic"]}]},
    "chain": {"deployments": [{"provider": "azure", "model": MODELS["azure"]}], "fallbacks": ["smart"]},
    "flash": {"deployments": [{"provider": "gemini", "model": MODELS["gemini"]}]},
    "vault": {"deployments": [{"provider": "bedrock", "model": MODELS["bedrock"]}]},
}
CONFIGURED = sorted({*ALIASES, *(f"{provider}/{model}" for provider, model in MODELS.items())})
"""Every alias, and every `provider/model` the configuration names (deployments, fallbacks, providers' lists)."""

KEYS: dict[str, dict[str, Any]] = {
    "fallback-only": {"models": ["fast", "anthropic/*"]},
    "everything": {"models": ["*"]},
    "deployment": {"models": ["fast", "openai/*"]},
    "alias-fallback": {"models": ["chain", "anthropic/*"]},
    "wildcards": {"models": ["f*", "gemini/*"]},
    "provider-filter": {"models": ["*"], "providers": ["anthropic", "gemini"]},
    "denied": {"models": ["*"], "providers": ["openai", "azure"]},
}


def _secret(name: str) -> str:
    return f"ahk-listing-{name}-".ljust(48, "0")


async def _answers(client: openai.AsyncOpenAI, name: str) -> tuple[bool, bool]:
    """Whether `GET /v1/models/{name}` finds it, and whether a chat request for it is served (else a 404)."""
    try:
        await client.models.retrieve(name)
        retrieved = True
    except openai.NotFoundError:
        retrieved = False
    try:
        await client.chat.completions.create(model=name, messages=USER)
        chatted = True
    except openai.NotFoundError:
        chatted = False
    return retrieved, chatted


async def test_the_model_list_agrees_with_what_a_chat_request_may_do(tmp_path: Path) -> None:
    keys = [{"name": name, "secret": _secret(name), **policy} for name, policy in KEYS.items()]
    seen: dict[str, dict[str, tuple[bool, bool, bool]]] = {}
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, keys, models=ALIASES) as hub:
        for name in KEYS:
            async with async_client(hub, _secret(name)) as client:
                listed = {m.id async for m in client.models.list()}
                assert listed <= set(CONFIGURED)
                seen[name] = {model: (model in listed, *await _answers(client, model)) for model in CONFIGURED}
    for name, answers in seen.items():
        for model, (listed, retrieved, chatted) in answers.items():
            assert listed == retrieved == chatted, (name, model, answers[model])
    usable = {name: sorted(m for m, (listed, _, _) in answers.items() if listed) for name, answers in seen.items()}
    assert usable == EXPECTED


ANTHROPIC, AZURE, GEMINI, OPENAI = (f"{p}/{MODELS[p]}" for p in ("anthropic", "azure", "gemini", "openai"))
EXPECTED = {
    "fallback-only": [ANTHROPIC, "fast"],  # `fast`'s deployment is not the key's: its fallback serves it
    "everything": CONFIGURED,
    "deployment": ["fast", OPENAI],
    "alias-fallback": [ANTHROPIC, "chain"],  # through the alias `chain` falls back to
    "wildcards": ["flash", GEMINI],  # `fast` matches `f*`, but nothing behind it is the key's
    "provider-filter": [ANTHROPIC, "chain", "fast", "flash", GEMINI, "smart"],
    "denied": [AZURE, "chain", "fast", OPENAI],
}

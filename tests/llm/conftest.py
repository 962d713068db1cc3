from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from llm.config import load_config
from llm.router import Router

SECRET = "sk-test-SECRET-value-123"
SECRET2 = "sk-test-SECRET-other-456"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", SECRET)
    monkeypatch.setenv("T_KEY2", SECRET2)


class FakeClock:
    """A clock the router reads and a sleep that advances it, so backoff and cooldown run instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@asynccontextmanager
async def open_router(config: dict[str, Any], **kwargs: Any) -> AsyncGenerator[Router]:
    router = Router(load_config(config), **kwargs)
    async with router:
        yield router


def chat(model: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def provider(kind: str, base_url: str, *keys: tuple[str, str, float], **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "base_url": base_url,
        "keys": [{"name": n, "secret": s, "weight": w} for n, s, w in keys],
        **extra,
    }


Predicate = Callable[..., bool]

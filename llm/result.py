"""What the router hands back: the hop that served, the attempts, usage and cost; streams included."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from llm.errors import Attempt, ProviderError
from llm.pricing import Price
from llm.schema import JSON, Usage

__all__ = ["Hop", "HopFilter", "ModelInfo", "Result", "ResultStream"]


@dataclass(frozen=True, slots=True)
class Hop:
    """One concrete target: provider name, the provider's model id, and the key name."""

    provider: str
    model: str
    key: str


HopFilter = Callable[[Hop], bool]
"""A caller's predicate: may this request use this hop? (The hub applies a virtual key's filters.)"""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model callers may request: an alias or `provider/model`."""

    id: str
    kind: str
    owned_by: str

    def to_openai(self) -> JSON:
        """An entry of OpenAI's `/v1/models` list."""
        return {"id": self.id, "object": "model", "created": 0, "owned_by": self.owned_by}


@dataclass(slots=True)
class Result:
    """A complete (non-streaming) result: the OpenAI-shaped `response` plus routing facts.

    `response` is a dict, or for embeddings a `llm.rawjson.RawJSON` (the provider's bytes, read as a mapping)."""

    response: Mapping[str, Any]
    hop: Hop
    attempts: tuple[Attempt, ...]
    usage: Usage | None
    price: Price | None = None
    dropped: tuple[str, ...] = ()
    """Request features a translation left out (an Anthropic Messages request sent to another provider)."""

    @property
    def cost(self) -> float | None:
        """USD cost, when both usage and a price are known."""
        if self.usage is None or self.price is None:
            return None
        return self.price.cost(self.usage)


@dataclass(slots=True)
class ResultStream:
    """A started stream: iterate it for chunks (OpenAI chunk dicts, or Responses events).

    The router has already received its first content, so retries and fallbacks are over: an error now is
    raised from the iteration (a `ProviderError`) and recorded in `error`. `usage` and `cost` are final
    once iteration ends. Always close it (`async with` or `aclose()`), also when stopping early.
    """

    hop: Hop
    attempts: tuple[Attempt, ...]
    price: Price | None
    _buffered: list[JSON]
    _source: AsyncIterator[JSON]
    _usage_of: Callable[[JSON], Usage | None]
    _emit: Callable[[JSON], JSON | None]
    _on_error: Callable[[ProviderError], None]
    usage: Usage | None = None
    error: ProviderError | None = None
    finished: bool = False
    _closed: bool = field(default=False)
    dropped: tuple[str, ...] = ()
    """Request features a translation left out, as for `Result.dropped`."""

    @property
    def cost(self) -> float | None:
        """USD cost, when both usage and a price are known."""
        if self.usage is None or self.price is None:
            return None
        return self.price.cost(self.usage)

    def __aiter__(self) -> AsyncIterator[JSON]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSON]:
        try:
            while self._buffered:
                out = self._take(self._buffered.pop(0))
                if out is not None:
                    yield out
            async for chunk in self._source:
                out = self._take(chunk)
                if out is not None:
                    yield out
        except ProviderError as exc:
            self.error = exc
            self._on_error(exc)
            raise
        self.finished = True

    def _take(self, chunk: JSON) -> JSON | None:
        usage = self._usage_of(chunk)
        if usage is not None:
            self.usage = usage
        return self._emit(chunk)

    async def aclose(self) -> None:
        """Stop the upstream stream and release its connection."""
        if not self._closed:
            self._closed = True
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()

    async def __aenter__(self) -> ResultStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

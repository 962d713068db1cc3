"""What every console module shares: where the console is served, and how it reaches the running hub."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hub.app import Hub

UI_PREFIX = "/ui"


class HubSource(Protocol):
    @property
    def hub(self) -> Hub: ...

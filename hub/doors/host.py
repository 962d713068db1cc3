"""What the doors need of the running hub: narrow protocols, so a door depends on no concrete `Hub` (and the
composition root, which builds the doors, is the only module that knows it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from hub.control import ControlHost
from hub.pipeline import Handler
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.control import ControlPlane
    from hub.governance.keys import KeyRing
    from hub.guardrails.pinning import ToolPins
    from hub.guardrails.rules import GuardrailRules
    from hub.signin.service import SignIn
    from hub.upstream_auth.manager import HubAuth
    from llm.router import Router


class DoorHost(Protocol):
    """What a door that only runs calls needs: the pipeline and the settings (the OpenAI and REST doors)."""

    @property
    def pipeline(self) -> Handler | None: ...

    @property
    def settings(self) -> Settings: ...


class AdminHost(DoorHost, ControlHost, Protocol):
    """What the admin API and the upstream OAuth pages need of the running hub."""

    @property
    def control(self) -> ControlPlane | None: ...

    @property
    def auth(self) -> HubAuth | None: ...

    @property
    def guardrails(self) -> GuardrailRules | None: ...

    @property
    def pins(self) -> ToolPins | None: ...

    @property
    def llm_router(self) -> Router | None:
        """The LLM router, with `[providers]` (None without)."""
        ...

    @property
    def signin(self) -> SignIn | None:
        """People signing in to `/mcp`, with `[sign_in]`."""
        ...

    def install_keys(self, ring: KeyRing, version: str) -> None:
        """Make a newly read key ring current (the keys of version `version` of the store)."""
        ...

    def server_status(self) -> list[dict[str, Any]]:
        """Health and counts per upstream."""
        ...

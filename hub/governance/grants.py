"""What a principal may reach: one `Grant` object, consulted by the authz stage, the listings, Code Mode's catalog
and Agent Mode's tool offer, so the rule is written once.

A key's `tools` globs select MCP names: tools and prompts by their exposed name (`server__tool`), resources and
templates as `server__<uri>` (so `server__*` grants everything one server offers). Its `models`, `providers` and
`provider_keys` globs select models and every routing hop. A grant can be narrowed (Agent Mode runs a program
only within its auto-approved tools) but never widened: `narrowed(globs)` keeps what both allow.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.registry import Entry, RegistryView, policy_name
from hub.governance.filters import GlobSet

__all__ = ["Grant"]


class Grant:
    """A principal's reach over MCP names, models and routing hops; immutable."""

    __slots__ = ("_within", "models", "provider_keys", "providers", "tools")

    def __init__(
        self,
        tools: GlobSet,
        models: GlobSet,
        providers: GlobSet,
        provider_keys: GlobSet | None = None,
        within: tuple[GlobSet, ...] = (),
    ) -> None:
        self.tools = tools
        self.models = models
        self.providers = providers
        self.provider_keys = provider_keys
        self._within = within

    def narrowed(self, globs: Iterable[str] | GlobSet) -> Grant:
        """The same grant, further limited to MCP names `globs` matches."""
        extra = globs if isinstance(globs, GlobSet) else GlobSet(globs)
        return Grant(self.tools, self.models, self.providers, self.provider_keys, (*self._within, extra))

    def rebased(self, base: Grant) -> Grant:
        """`base` narrowed the way this grant was narrowed (a key changed while a narrowed call ran)."""
        return Grant(base.tools, base.models, base.providers, base.provider_keys, self._within)

    # -- MCP --------------------------------------------------------------------------------------------------

    def allows_name(self, name: str) -> bool:
        """Whether an MCP policy name (`server__tool`, `server__prompt`, `server__<uri>`) is granted."""
        if not self.tools.matches(name):
            return False
        for extra in self._within:
            if not extra.matches(name):
                return False
        return True

    def allows(self, entry: Entry, scope: str | None = None) -> bool:
        """Whether a registry entry is granted, on the endpoint of `scope` (a single server) if given."""
        if scope is not None and entry.server != scope:
            return False
        name = policy_name(entry)  # `allows_name`, inlined: this runs on every tool call
        if not self.tools.matches(name):
            return False
        for extra in self._within:
            if not extra.matches(name):
                return False
        return True

    def visible(self, entries: Iterable[Entry], scope: str | None = None) -> list[Entry]:
        """The granted entries among `entries` (on the endpoint of `scope`)."""
        return [e for e in entries if self.allows(e, scope)]

    def reaches(self, view: RegistryView, server: str) -> bool:
        """Whether anything of `server` is granted (its single-server endpoint exists for this principal)."""
        kinds = (view.tools.values(), view.prompts.values(), view.resources.values(), (e for _, e in view.templates))
        return any(self.allows(entry, server) for entries in kinds for entry in entries)

    # -- LLM --------------------------------------------------------------------------------------------------

    def allows_model(self, name: str) -> bool:
        """Whether a model alias or `provider/model` name is granted."""
        return self.models.matches(name)

    def allows_hop(self, provider: str, model: str, key_name: str) -> bool:
        """Whether one routing hop (provider, model, provider key) is granted."""
        if not self.providers.matches(provider) or not self.models.matches(f"{provider}/{model}"):
            return False
        return self.provider_keys is None or self.provider_keys.matches(f"{provider}:{key_name}")

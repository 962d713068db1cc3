"""The terminal step for `mcp.list` calls: what a key sees of the catalog, on the aggregated endpoint or on one
server's (`Call.scope`).

Lists are filtered by the caller's `Grant` and built once per (kind, key, registry version, endpoint), already as
wire JSON; Code Mode keys see the four meta-tools in place of the tools behind them. A result is shared by every
call that hits the cache: callers copy it before adding anything.

A list longer than the page size is served in pages (`hub.executors.list_pages`): the order is fixed (Code Mode's
meta-tools first, then by exposed name) and a cursor names the last entry given, not an offset, so it stays valid
when the catalog changes in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types

from connectors.registry import Entry, RegistryView
from hub.call import Call, Outcome, Principal
from hub.errors import BadRequest
from hub.executors.code import CodeMode
from hub.executors.list_pages import DEFAULT_PAGE_SIZE, Built, page_of

ListCache = dict[tuple[Any, ...], Built]
KINDS = {"tools": "tools", "prompts": "prompts", "resources": "resources", "templates": "resourceTemplates"}
"""`mcp.list` targets and the result field each fills."""


class McpListings:
    """Builds and caches the per-key lists."""

    def __init__(
        self, view: Callable[[], RegistryView], codemode: CodeMode | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self._view = view
        self._codemode = codemode
        self._cache: ListCache = {}
        self.page_size = page_size

    async def __call__(self, call: Call) -> Outcome:
        principal = call.principal
        assert principal is not None
        payload = call.payload if isinstance(call.payload, dict) else {}
        if call.target not in KINDS:
            raise BadRequest(f"unknown list: {call.target[:64]}")
        built = self._built(call.target, principal, call.scope)
        return Outcome(page_of(call.target, KINDS[call.target], built, payload.get("cursor"), self.page_size))

    def listing(self, kind: str, principal: Principal, scope: str | None = None) -> dict[str, Any]:
        """The whole list result of `kind` for a principal, every page in one (shared: copy before changing it)."""
        return self._built(kind, principal, scope).result

    def _built(self, kind: str, principal: Principal, scope: str | None) -> Built:
        view = self._view()
        key = principal.key
        cache_key = (kind, scope, key.id, view.version, key.tools, key.code_mode, principal.narrowing)
        hit = self._cache.get(cache_key)
        if hit is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            hit = self._cache[cache_key] = self._build(kind, view, principal, scope)
        return hit

    def clear(self) -> None:
        """Forget every cached list (the catalog or the keys changed)."""
        self._cache.clear()

    def _build(self, kind: str, view: RegistryView, principal: Principal, scope: str | None) -> Built:
        grant = principal.grant
        if kind == "tools":
            visible = grant.visible(view.tools.values(), scope)
            codemode = self._codemode
            if codemode is None:
                return _dump("tools", visible, scope)
            plain = _dump("tools", [e for e in visible if not codemode.hides(principal.key, e)], scope)
            return plain.after_meta(codemode.meta_tools(principal, view, scope))
        if kind == "prompts":
            return _dump("prompts", grant.visible(view.prompts.values(), scope), scope)
        if kind == "resources":
            return _dump("resources", grant.visible(view.resources.values(), scope), scope)
        templates = [e for _, e in view.templates]  # one per server, a shared spelling exposed as `server+...`
        return _dump("resourceTemplates", grant.visible(templates, scope), scope)


def _dump(field: str, entries: list[Entry], scope: str | None) -> Built:
    ordered = sorted(entries, key=_name)
    items = [_shown(e, scope).model_dump(by_alias=True, mode="json", exclude_none=True) for e in ordered]
    return Built(field, items, [(1, e.exposed) for e in ordered])


def _name(entry: Entry) -> str:
    return entry.exposed


def _shown(entry: Entry, scope: str | None) -> Any:
    """The definition as an endpoint shows it (original names on a single-server endpoint)."""
    d = entry.definition
    if scope is None:
        return d
    if isinstance(d, types.Tool | types.Prompt):
        return d.model_copy(update={"name": entry.original})
    if isinstance(d, types.Resource):
        return d.model_copy(update={"uri": entry.original})
    return d if entry.exposed == entry.original else d.model_copy(update={"uri_template": entry.original})

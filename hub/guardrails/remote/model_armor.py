"""Google Cloud Model Armor: ``sanitizeUserPrompt`` / ``sanitizeModelResponse`` on a template."""

from __future__ import annotations

from typing import Any

import httpx2

from ..config import GuardrailConfig, resolve_secret
from ..verdict import GuardrailServiceError, Scope
from .base import RemoteResult, post_json, require

__all__ = ["ModelArmorGuardrail"]


class ModelArmorGuardrail:
    """Intervene when any filter result says ``MATCH_FOUND`` (whatever the top-level state says).

    An invocation that did not fully succeed counts as a failed check (the guardrail's
    ``on_error`` decides). When only the sensitive-data filter matched and it de-identified the
    text, that text is offered as replacement. ``api_key`` holds an OAuth 2.0 access token.
    """

    service = "model_armor"

    def __init__(self, cfg: GuardrailConfig, client: httpx2.AsyncClient) -> None:
        self.client = client
        base = (cfg.endpoint or f"https://modelarmor.{cfg.location}.rep.googleapis.com").rstrip("/")
        self.template_url = f"{base}/v1/projects/{cfg.project}/locations/{cfg.location}/templates/{cfg.template}"
        self.headers = {"authorization": f"Bearer {resolve_secret(cfg.api_key)}"}

    async def evaluate(self, text: str, scope: Scope) -> RemoteResult:
        """Sanitize ``text`` as a user prompt (input) or a model response (output)."""
        if scope.direction == "input":
            url, body = f"{self.template_url}:sanitizeUserPrompt", {"userPromptData": {"text": text}}
        else:
            url, body = f"{self.template_url}:sanitizeModelResponse", {"modelResponseData": {"text": text}}
        data = await post_json(self.client, self.service, url, body, self.headers)
        result = require(data.get("sanitizationResult"), dict, self.service, "sanitizationResult")
        if result.get("invocationResult", "SUCCESS") != "SUCCESS":
            raise GuardrailServiceError(self.service, f"invocation {result.get('invocationResult')}")
        filters = require(result.get("filterResults") or {}, dict, self.service, "filterResults")
        matched = [name for name, value in filters.items() if _matched(value)]
        if result.get("filterMatchState") == "MATCH_FOUND" and not matched:
            matched = ["filter"]
        if not matched:
            return RemoteResult(False)
        replacement = _deidentified(filters.get("sdp")) if matched == ["sdp"] else None
        return RemoteResult(True, tuple(f"model_armor:{name}" for name in matched), replacement)


def _matched(node: Any) -> bool:
    """Whether a filter result (any nesting) carries ``matchState: MATCH_FOUND``."""
    if isinstance(node, dict):
        if node.get("matchState") == "MATCH_FOUND":
            return True
        return any(_matched(v) for v in node.values())
    if isinstance(node, list):
        return any(_matched(v) for v in node)
    return False


def _deidentified(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    result = node.get("sdpFilterResult")
    deid = result.get("deidentifyResult") if isinstance(result, dict) else None
    data = deid.get("data") if isinstance(deid, dict) else None
    text = data.get("text") if isinstance(data, dict) else None
    return text if isinstance(text, str) else None

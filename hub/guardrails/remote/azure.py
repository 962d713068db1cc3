"""Azure AI Content Safety: ``text:analyze`` (harm categories, blocklists) and Prompt Shields."""

from __future__ import annotations

import httpx2

from ..config import GuardrailConfig, resolve_secret
from ..verdict import Scope
from .base import RemoteResult, post_json, require

__all__ = ["AzureContentSafety"]

ANALYZE_API_VERSION = "2023-10-01"
SHIELD_API_VERSION = "2024-09-01"
MAX_ANALYZE_CHARS = 10_000


class AzureContentSafety:
    """Harm categories at or above ``severity_threshold`` and blocklist hits intervene; so does an
    attack found by Prompt Shields in a prompt (input) or in an MCP tool result (a document)."""

    service = "azure"

    def __init__(self, cfg: GuardrailConfig, client: httpx2.AsyncClient) -> None:
        self.client = client
        self.base = (cfg.endpoint or "").rstrip("/")
        self.headers = {"Ocp-Apim-Subscription-Key": resolve_secret(cfg.api_key) or ""}
        self.cfg = cfg

    async def evaluate(self, text: str, scope: Scope) -> RemoteResult:
        """Run the enabled checks on ``text``."""
        rules: list[str] = []
        if self.cfg.analyze_text:
            for offset in range(0, max(len(text), 1), MAX_ANALYZE_CHARS):
                rules.extend(await self._analyze(text[offset : offset + MAX_ANALYZE_CHARS]))
        if self.cfg.prompt_shield and (scope.direction == "input" or scope.door == "mcp"):
            rules.extend(await self._shield(text, as_document=scope.direction == "output"))
        unique = tuple(dict.fromkeys(rules))
        return RemoteResult(bool(unique), unique)

    async def _analyze(self, text: str) -> list[str]:
        body = {
            "text": text,
            "categories": list(self.cfg.categories),
            "blocklistNames": list(self.cfg.blocklists),
            "haltOnBlocklistHit": False,
            "outputType": "FourSeverityLevels",
        }
        url = f"{self.base}/contentsafety/text:analyze?api-version={ANALYZE_API_VERSION}"
        data = await post_json(self.client, self.service, url, body, self.headers)
        rules: list[str] = []
        for item in require(data.get("categoriesAnalysis", []), list, self.service, "categoriesAnalysis"):
            item = require(item, dict, self.service, "categoriesAnalysis item")
            severity = item.get("severity") or 0
            if isinstance(severity, int) and severity >= self.cfg.severity_threshold:
                rules.append(f"content:{item.get('category')}")
        matches = require(data.get("blocklistsMatch") or [], list, self.service, "blocklistsMatch")
        rules.extend(f"blocklist:{m.get('blocklistName')}" for m in matches if isinstance(m, dict))
        return rules

    async def _shield(self, text: str, *, as_document: bool) -> list[str]:
        body = {"userPrompt": "", "documents": [text]} if as_document else {"userPrompt": text, "documents": []}
        url = f"{self.base}/contentsafety/text:shieldPrompt?api-version={SHIELD_API_VERSION}"
        data = await post_json(self.client, self.service, url, body, self.headers)
        rules: list[str] = []
        user = data.get("userPromptAnalysis")
        if isinstance(user, dict) and user.get("attackDetected") is True:
            rules.append("prompt_shield:user_prompt")
        documents = require(data.get("documentsAnalysis") or [], list, self.service, "documentsAnalysis")
        if any(isinstance(d, dict) and d.get("attackDetected") is True for d in documents):
            rules.append("prompt_shield:document")
        return rules

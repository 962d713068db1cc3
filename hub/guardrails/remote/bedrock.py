"""AWS Bedrock Guardrails ``ApplyGuardrail`` (bedrock-runtime, API version 2023-09-30)."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

import httpx2

from ..config import GuardrailConfig, resolve_secret
from ..verdict import GuardrailServiceError, Scope
from .base import RemoteResult, post_json, require
from .sigv4 import AwsCredentials, sign_request

__all__ = ["BedrockGuardrail"]

_POLICY_LISTS = (
    ("topicPolicy", "topics", "topic"),
    ("contentPolicy", "filters", "content"),
    ("wordPolicy", "customWords", "word"),
    ("wordPolicy", "managedWordLists", "word"),
    ("sensitiveInformationPolicy", "piiEntities", "pii"),
    ("sensitiveInformationPolicy", "regexes", "regex"),
    ("contextualGroundingPolicy", "filters", "grounding"),
)


class BedrockGuardrail:
    """Send the text to a Bedrock guardrail; ``GUARDRAIL_INTERVENED`` means intervene.

    Authenticates with a Bedrock API key (bearer) or SigV4 (signing name ``bedrock``). When the
    guardrail only anonymised (no ``BLOCKED`` action), its masked output is offered as replacement.
    """

    service = "bedrock"

    def __init__(self, cfg: GuardrailConfig, client: httpx2.AsyncClient) -> None:
        self.client = client
        self.region = cfg.region or "us-east-1"
        base = (cfg.endpoint or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        guardrail = quote(cfg.guardrail_id or "", safe="")
        self.url = f"{base}/guardrail/{guardrail}/version/{quote(cfg.guardrail_version, safe='')}/apply"
        self.api_key = resolve_secret(cfg.api_key)
        self.credentials: AwsCredentials | None = None
        if not self.api_key:
            self.credentials = AwsCredentials(
                resolve_secret(cfg.access_key_id) or "",
                resolve_secret(cfg.secret_access_key) or "",
                resolve_secret(cfg.session_token),
            )

    def _sign(self, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        assert self.credentials is not None
        return sign_request(
            "POST", self.url, headers, body, credentials=self.credentials, region=self.region, service="bedrock"
        )

    async def evaluate(self, text: str, scope: Scope) -> RemoteResult:
        """Apply the guardrail to ``text`` as ``INPUT`` or ``OUTPUT``."""
        body = {
            "source": "INPUT" if scope.direction == "input" else "OUTPUT",
            "content": [{"text": {"text": text}}],
            "outputScope": "INTERVENTIONS",
        }
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        sign = None if self.api_key else partial(BedrockGuardrail._sign, self)
        data = await post_json(self.client, self.service, self.url, body, headers, sign=sign)
        action = data.get("action")
        if action not in ("NONE", "GUARDRAIL_INTERVENED"):
            raise GuardrailServiceError(self.service, "malformed response: action")
        if action == "NONE":
            return RemoteResult(False)
        rules, blocked = _assessed(require(data.get("assessments", []), list, self.service, "assessments"))
        outputs = data.get("outputs") or []
        replacement = None
        if not blocked and outputs and isinstance(outputs[0], dict):
            replacement = outputs[0].get("text")
        return RemoteResult(True, tuple(rules) or ("guardrail",), replacement if isinstance(replacement, str) else None)


def _assessed(assessments: list[Any]) -> tuple[list[str], bool]:
    """Rule names that fired and whether any of them blocked."""
    rules: list[str] = []
    blocked = False
    for assessment in assessments:
        if not isinstance(assessment, dict):
            continue
        for policy, key, prefix in _POLICY_LISTS:
            section = assessment.get(policy)
            items = section.get(key, []) if isinstance(section, dict) else []
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or item.get("action", "NONE") == "NONE":
                    continue
                if item.get("detected") is False:
                    continue
                name = item.get("name") or item.get("type") or "match"
                rules.append(f"{prefix}:{name}")
                blocked = blocked or item.get("action") == "BLOCKED"
    return list(dict.fromkeys(rules)), blocked

"""Patronus AI ``POST /v1/evaluate`` with the configured evaluators."""

from __future__ import annotations

import httpx2

from ..config import GuardrailConfig, resolve_secret
from ..verdict import GuardrailServiceError, Scope
from .base import RemoteResult, post_json, require

__all__ = ["PatronusGuardrail"]


class PatronusGuardrail:
    """Intervene when the evaluations fail (``all_pass``: any fails; ``any_pass``: all fail).

    An evaluation whose ``status`` is not ``success`` did not run: the check counts as failed.
    """

    service = "patronus"

    def __init__(self, cfg: GuardrailConfig, client: httpx2.AsyncClient) -> None:
        self.client = client
        self.url = (cfg.endpoint or "https://api.patronus.ai").rstrip("/") + "/v1/evaluate"
        self.headers = {"X-API-KEY": resolve_secret(cfg.api_key) or ""}
        self.evaluators = [
            {"evaluator": e.evaluator, "criteria": e.criteria, "explain_strategy": "never"}
            if e.criteria
            else {"evaluator": e.evaluator, "explain_strategy": "never"}
            for e in cfg.evaluators
        ]
        self.combine = cfg.combine

    async def evaluate(self, text: str, scope: Scope) -> RemoteResult:
        """Evaluate ``text`` as the task input (input) or the task output (output)."""
        field = "task_input" if scope.direction == "input" else "task_output"
        body = {"evaluators": self.evaluators, field: text, "capture": "none"}
        data = await post_json(self.client, self.service, self.url, body, self.headers)
        results = require(data.get("results"), list, self.service, "results")
        if not results:
            raise GuardrailServiceError(self.service, "malformed response: no results")
        failed: list[str] = []
        for item in results:
            item = require(item, dict, self.service, "result")
            if item.get("status") != "success":
                raise GuardrailServiceError(self.service, f"evaluation status {item.get('status')}")
            evaluation = require(item.get("evaluation_result"), dict, self.service, "evaluation_result")
            if evaluation.get("pass") is False:
                name = item.get("criteria") or item.get("evaluator_id") or "evaluator"
                failed.append(f"patronus:{name}")
        intervened = bool(failed) if self.combine == "all_pass" else len(failed) == len(results)
        return RemoteResult(intervened, tuple(failed) if intervened else ())

"""Azure OpenAI: the OpenAI wire format at deployment URLs, with `api-key` and `api-version`."""

from __future__ import annotations

from urllib.parse import quote

from llm.providers.openai import OpenAIProvider
from llm.schema import JSON

__all__ = ["AzureOpenAIProvider"]


class AzureOpenAIProvider(OpenAIProvider):
    """Kind `azure`: `{base}/openai/deployments/{deployment}/{operation}?api-version=...`."""

    def auth_header(self, secret: str) -> dict[str, str]:
        """Azure keys travel in `api-key`."""
        return {"api-key": secret}

    def deployment(self, model: str) -> str:
        """The Azure deployment name for a model (the model itself when unmapped)."""
        return self.config.deployments.get(model, model)

    def url(self, operation: str, model: str) -> str:
        """Deployment-scoped URL; `responses` (and a stored response, `responses/{id}...`) is resource-scoped and
        takes the deployment as `model`."""
        version = f"api-version={self.config.api_version}"
        if operation == "responses" or operation.startswith("responses/"):
            return f"{self.base_url}/openai/{operation}?{version}"
        return f"{self.base_url}/openai/deployments/{quote(self.deployment(model), safe='')}/{operation}?{version}"

    def body(self, request: JSON, model: str) -> JSON:
        """Azure routes by deployment: `model` carries the deployment name."""
        return super().body(request, self.deployment(model))

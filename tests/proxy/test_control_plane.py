"""The hub's other httpx2 clients (remote guardrail services here) keep httpx2's reading of the proxy variables:
a request to a content-safety service goes through the egress proxy the environment names."""

from __future__ import annotations

import anyio
import pytest

from hub.guardrails import GuardrailConfig, Guardrails, Scope
from tests.guardrails.fake_vendors import serve
from tests.proxy.forward_proxy import forward_proxy

pytestmark = pytest.mark.anyio


async def test_a_remote_guardrail_is_consulted_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve() as vendor:
        async with forward_proxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "")
            config = {"name": "safety", "kind": "azure", "endpoint": vendor.url, "timeout": 5.0, "api_key": "az-key"}
            guardrails = Guardrails([GuardrailConfig.model_validate(config)])
            with anyio.fail_after(10):
                verdict = await guardrails.check("hello", Scope("input", "llm", "llm.chat"))
            await guardrails.aclose()
    assert verdict.decision == "allow"
    assert vendor.requests, "the service answered"
    assert all(line.startswith(f"POST {vendor.url}/contentsafety/") for line in proxy.forwarded())
    assert len(proxy.forwarded()) == len(vendor.requests)

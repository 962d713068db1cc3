"""A remote guardrail service that fails: `on_error = "block"` fails closed (the call is refused, the vendor's
error never shown), `on_error = "allow"` fails open (the call goes through, the failure is logged). The service is
the local fake of `tests/guardrails` (Azure Content Safety's wire format) answering 500 or never answering."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.guardrails.fake_vendors import Scripted, serve
from tests.guardrails_e2e.harness import DOORS, REFUSED_CODE, DoorName, Refused, e2e_hub, key

pytestmark = pytest.mark.anyio
VENDOR_DETAIL = "internal vendor detail 4c1d"


def _rule(url: str, name: str, on_error: str, keys: list[str], timeout: float = 5.0) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "azure",
        "endpoint": url,
        "api_key": "env:E2E_AZURE_KEY",
        "prompt_shield": False,
        "apply_to": "input",
        "on_error": on_error,
        "keys": keys,
        "timeout": timeout,
    }


@pytest.mark.parametrize("door", DOORS)
async def test_a_failing_service_fails_closed_or_open_as_configured(
    door: DoorName, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_AZURE_KEY", "azure-e2e-key")
    with serve() as vendor:
        failing = Scripted(status=500, body={"error": {"code": "InternalError", "message": VENDOR_DETAIL}})
        vendor.script("azure-analyze", *[failing] * 6)  # one check is three attempts (two retries)
        rules = [
            _rule(vendor.url, "closed", "block", ["strict"]),
            _rule(vendor.url, "open", "allow", ["lenient"]),
            _rule(vendor.url, "slow", "block", ["hurried"], timeout=0.5),
        ]
        async with e2e_hub(tmp_path, rules, [key("strict"), key("lenient"), key("hurried")]) as hub:
            client = hub.client(door)
            caplog.set_level(logging.WARNING, logger="hub.guardrails.findings")
            with pytest.raises(Refused) as closed:
                await client.send("strict", "hello")
            caplog.clear()
            opened = await client.send("lenient", "hello")
            records = [r for r in caplog.records if r.name == "hub.guardrails.findings"]
            vendor.script("azure-analyze", Scripted(hang=True))
            with pytest.raises(Refused) as timed_out:
                await client.send("hurried", "hello")
            vendor.release.set()
        attempts = [r for r in vendor.requests if r.vendor == "azure-analyze"]
    assert closed.value.code == REFUSED_CODE[door] and "closed" in closed.value.message
    assert VENDOR_DETAIL not in closed.value.message
    assert opened == "hello"
    findings = [f for r in records for f in r.__dict__["guardrail_findings"]]
    assert [(f["guardrail"], f["action"], f["outcome"]) for f in findings] == [("open", "error", "allowed")]
    assert timed_out.value.code == REFUSED_CODE[door] and "slow" in timed_out.value.message
    assert len(attempts) == 7  # 3 + 3 attempts for the failing checks, 1 that hung
    assert all(a.headers["ocp-apim-subscription-key"] == "azure-e2e-key" for a in attempts)

"""Guardrail scanning speed: a 1 KB prompt and a 100 KB document, every gitleaks rule on.

Run: .venv/bin/python bench/guardrails_bench.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from hub.guardrails import GuardrailConfig, Guardrails, Scope
from hub.guardrails.pii import PiiScanner
from hub.guardrails.secrets import SecretScanner

PROSE = (
    "Please summarise the quarterly planning notes for the platform team. List the open action items, "
    "who owns each one, and the date it is due. Keep the tone neutral and the summary under two hundred "
    "words. Mention any risks to the migration schedule and the dependencies on the data team. "
)


KEYWORDY = "the api key and access token rotate; the password and secret auth credentials live in the vault. "


def text_of(size: int, prose: str = PROSE) -> str:
    rng = random.Random(3)
    words = prose.split()
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def timed(fn, text: str, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        fn(text)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def check_timed(guardrails: Guardrails, text: str, rounds: int) -> tuple[float, float]:
    scope = Scope("input", "llm", "llm.chat")
    samples: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        verdict = await guardrails.check(text, scope)
        samples.append((time.perf_counter_ns() - started) / 1e6)
        assert verdict.decision == "allow", verdict.rules
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    small, large = text_of(1024), text_of(100 * 1024)
    keywordy = text_of(1024, PROSE + KEYWORDY)
    secrets = SecretScanner()
    pii = PiiScanner()
    assert not secrets.scan(small) and not secrets.scan(large) and not pii.scan(small)
    assert not secrets.scan(keywordy)
    print(f"rules: {len(secrets.rules)} gitleaks rules on RE2 behind an Aho-Corasick keyword prefilter")
    for name, fn, text, rounds in [
        ("secrets 1 KB", secrets.scan, small, 5000),
        ("secrets 1 KB, many keywords", secrets.scan, keywordy, 5000),
        ("secrets 100 KB", secrets.scan, large, 100),
        ("pii 1 KB", pii.scan, small, 5000),
        ("pii 100 KB", pii.scan, large, 50),
    ]:
        p50, p99 = timed(fn, text, rounds)
        print(f"{name:<28} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms")
    both = Guardrails([GuardrailConfig(name="s", kind="secrets"), GuardrailConfig(name="p", kind="pii")])
    only = Guardrails([GuardrailConfig(name="s", kind="secrets")])
    for name, g, text, rounds in [
        ("check(secrets) 1 KB", only, small, 5000),
        ("check(secrets+pii) 1 KB", both, small, 5000),
        ("check(secrets) 100 KB", only, large, 100),
    ]:
        p50, p99 = asyncio.run(check_timed(g, text, rounds))
        print(f"{name:<28} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms")


if __name__ == "__main__":
    main()

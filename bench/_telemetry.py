"""The observability axis of `bench/mcp_bench.py` and `bench/llm_bench.py` (`--telemetry`): what metrics and traces
cost in throughput, the same tree served three times in one run.

  - metrics off: `[metrics] enabled = false`, no tracing (the hub without observability);
  - metrics on:  the default (`[metrics]` on), no tracing;
  - tracing on:  metrics on and tracing at 100% sampling (the default ratio), spans and the request log's OTLP
                 records exported over OTLP/HTTP to a sink served on 127.0.0.1 by a process of its own
                 (`bench/instructions_bench.py --sink PORT`: it answers every export with 200 and keeps nothing;
                 in its own process so that reading the exports takes nothing from the load generator's loop).

The three hubs run side by side and are measured in turn, round after round (each round starts one further along,
so that none is always measured first or after the same other one); each ratio is taken within a round, and the
median over the rounds is shown, as the rest of the benchmarks do.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import urllib.request
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path

from _procs import free_port, start, stop

VARIANTS = ("metrics off", "metrics on", "tracing on")
METRICS_OFF = "\n[metrics]\nenabled = false\n"
HERE = Path(__file__).resolve().parent


def config_of(variant: str) -> str:
    """What the variant adds to the hub's configuration file."""
    return METRICS_OFF if variant == "metrics off" else ""


def env_of(variant: str, sink: str) -> dict[str, str]:
    """What the variant adds to the hub's environment (`sink`: the OTLP/HTTP sink's base URL)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": sink} if variant == "tracing on" else {}


@contextmanager
def otlp_sink() -> Generator[str]:
    """A running OTLP/HTTP sink process; its base URL. Stopped (by its PID) on the way out."""
    port = free_port()
    process = start([sys.executable, str(HERE / "instructions_bench.py"), "--sink", str(port)], port)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
        with urllib.request.urlopen(url, timeout=30) as answer:
            print(f"the sink received: {json.loads(answer.read())}", file=sys.stderr)
    finally:
        stop(process)


def alternate(rounds: int, measure: Callable[[str], dict[str, float]]) -> dict[str, list[dict[str, float]]]:
    """`measure(variant)` for every variant, `rounds` times, the starting variant moving by one each round."""
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for index in range(max(1, rounds)):
        shift = index % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            figures = measure(variant)
            samples[variant].append(figures)
            shown = "  ".join(f"{k}={v:.1f}" for k, v in figures.items())
            print(f"round {index + 1} {variant:<12} {shown}", file=sys.stderr, flush=True)
    return samples


def _within(samples: dict[str, list[dict[str, float]]], top: str, bottom: str, key: str) -> float:
    pairs = zip(samples[top], samples[bottom], strict=True)
    return statistics.median(t[key] / b[key] for t, b in pairs if b[key])


def report(samples: dict[str, list[dict[str, float]]], rows: list[tuple[str, str]], load: tuple[str, str]) -> None:
    """A Markdown table: each row's median per variant and the ratios within rounds (`load`: the load average at
    the start and at the end of the run)."""
    print(f"\n{len(samples['metrics off'])} rounds; load average (1, 5, 15 min) at start {load[0]}, at end {load[1]}")
    print("| measure | metrics off | metrics on | tracing on | on / off | tracing / off | tracing / on |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, key in rows:
        medians = [statistics.median(s[key] for s in samples[v]) for v in VARIANTS]
        ratios = [
            _within(samples, "metrics on", "metrics off", key),
            _within(samples, "tracing on", "metrics off", key),
            _within(samples, "tracing on", "metrics on", key),
        ]
        cells = " | ".join(f"{m:.0f}" for m in medians) + " | " + " | ".join(f"{r:.3f}" for r in ratios)
        print(f"| {label} | {cells} |")


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


__all__ = ["VARIANTS", "alternate", "config_of", "env_of", "load_average", "otlp_sink", "report"]

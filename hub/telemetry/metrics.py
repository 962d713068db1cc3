"""Prometheus metrics: the one place that knows the metric names, their labels and where each value comes from.

Two kinds of values:

- **Per call**, from the audit stage once a call is over (a stream: once it ended), in `HubMetrics.observe`: one
  dictionary lookup finds the call's series by (door, operation, outcome, status), then a few increments of plain
  integers and floats (a histogram observation is one `bisect` into fixed buckets). No lock and no
  `prometheus_client` object is touched per call: a labelled child's `inc()` takes a lock and costs several times
  a whole observation here, and the hot path has a budget of a few microseconds. LLM usage, MCP tool calls, Agent
  Mode loops and rejections add one more lookup each, only for the calls they concern.
- **At scrape time**, in `collect()`: everything kept as state elsewhere (upstream health and reconnects, the
  sandbox pool, open MCP sessions) is read then through callbacks, and the Code Mode and Agent Mode figures are
  derived from the per-call series (a Code Mode inner call is a call from the `code` door, an Agent Mode step one
  from the `agent` door). `prometheus_client` builds the families and writes the exposition (OpenMetrics when the
  scraper asks for it, else the Prometheus text format).

Cardinality is bounded by design: a label value is taken only from a finite set the operator configures or the
hub defines (doors, operations, error codes, statuses, key names with their team and customer, configured
servers and the tools they list, configured providers and models, guardrail names and rules). A value outside
its set (a model the configuration does not name, a tool no server lists) is counted as `other`, and each metric
keeps at most `MAX_SERIES` label sets, past which new ones are counted as `other` too. See docs/observability.md.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from hub.call import agent_loop
from hub.executors.stream import ClosingStream

if TYPE_CHECKING:
    from connectors.registry import Entry
    from connectors.upstream import Upstream
    from hub.audit.requestlog import LogEntry
    from hub.call import Call, Outcome
    from hub.governance.keys import VirtualKey
    from hub.guardrails import Scope, Verdict
    from llm.config import ModelConfig, ProviderConfig

__all__ = [
    "BUCKETS_S",
    "MAX_SERIES",
    "OTHER",
    "HubMetrics",
    "MetricSources",
    "PoolFigures",
    "configured_deployments",
]

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Upper bounds (seconds) of every duration histogram: from a hub's own overhead (a millisecond or less) to a long
LLM generation or Code Mode run."""
_BOUNDS_MS = tuple(bound * 1000 for bound in BUCKETS_S)
_LE = (*(repr(bound) for bound in BUCKETS_S), "+Inf")

MAX_SERIES = 2000
"""The most label sets one metric keeps; a new one past it is counted under `other`."""
OTHER = "other"
"""The label value of everything outside a label's finite set."""
_REJECTIONS = {"rate_limit_error": "rate_limit", "insufficient_quota": "budget"}
"""Outcome codes that are governance rejections, and the `reason` label they get."""
_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
_LOOP_OPERATIONS = frozenset({"llm.chat", "llm.messages"})
"""Operations an Agent Mode loop arrives as (the OpenAI and the Anthropic door)."""

V = TypeVar("V")

PoolFigures = tuple[int, int, int]
"""The Code Mode sandbox pool: (live workers, workers running a program, runs waiting for a worker)."""


@dataclass
class MetricSources:
    """Where the metrics read what they do not count themselves: bound by `hub.app` to the running hub."""

    tools: Callable[[], Mapping[str, Entry]] = dict
    """Exposed tool name -> its server and name there (the registry's current view)."""
    upstreams: Callable[[], Mapping[str, Upstream]] = dict
    """Configured upstream MCP servers by name."""
    sessions: Callable[[], Mapping[str, int]] = dict
    """Open MCP sessions per key name."""
    pool: Callable[[], PoolFigures | None] = lambda: None
    """The Code Mode sandbox pool's figures, None while it is not running."""
    deployments: frozenset[tuple[str, str]] = frozenset()
    """Configured (provider, model) pairs: the `model` label's set (any other model is `other`)."""
    providers: frozenset[str] = frozenset()
    """Configured provider names: the `provider` label's set."""


def configured_deployments(
    providers: Mapping[str, ProviderConfig], models: Mapping[str, ModelConfig], prices: Mapping[str, object]
) -> frozenset[tuple[str, str]]:
    """The (provider, model) pairs the configuration names: the providers' model lists and Azure deployment maps,
    the model aliases' deployments, and prices keyed `provider/model`."""
    pairs: set[tuple[str, str]] = set()
    for name, provider in providers.items():
        pairs.update((name, model) for model in provider.models)
        pairs.update((name, model) for model in provider.deployments)
    for alias in models.values():
        pairs.update((deployment.provider, deployment.model) for deployment in alias.deployments)
    for key in prices:
        provider, sep, model = key.partition("/")
        if sep and provider in providers:
            pairs.add((provider, model))
    return frozenset(pairs)


class _Histogram:
    """Counts per bucket (not cumulative) and the sum, in milliseconds; turned into seconds at scrape time. An
    observation is `counts[bisect_left(_BOUNDS_MS, ms)] += 1` and `sum += ms`, written out where it happens."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_MS) + 1)
        self.sum = 0.0

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for le, count in zip(_LE, self.counts, strict=True):
            total += count
            out.append((le, total))
        return out


@dataclass(slots=True)
class _Timing:
    """The duration histograms of one (door, operation)."""

    whole: _Histogram = field(default_factory=_Histogram)
    upstream: _Histogram = field(default_factory=_Histogram)
    overhead: _Histogram = field(default_factory=_Histogram)


@dataclass(slots=True)
class _Row:
    """One (door, operation, outcome, status): its request count, and its (door, operation)'s histograms."""

    timing: _Timing
    count: int = 0


@dataclass(slots=True)
class _Spend:
    """Tokens by kind (in `_TOKEN_KINDS` order) and US dollars of one label set."""

    tokens: list[int] = field(default_factory=lambda: [0] * len(_TOKEN_KINDS))
    usd: float = 0.0
    calls: int = 0


class _Labelled(Generic[V]):
    """Values by label tuple, at most `MAX_SERIES` of them: past that, new label sets share one `other` value."""

    __slots__ = ("_factory", "_other", "values")

    def __init__(self, factory: Callable[[], V], width: int) -> None:
        self._factory = factory
        self._other = (OTHER,) * width
        self.values: dict[tuple[str, ...], V] = {}

    def get(self, labels: tuple[str, ...]) -> V:
        value = self.values.get(labels)
        if value is None:
            if len(self.values) >= MAX_SERIES:
                labels = self._other
                value = self.values.get(labels)
            if value is None:
                value = self.values[labels] = self._factory()
        return value


class HubMetrics:
    """The hub's metrics: `observe` per call (the audit stage's `CallObserver`), `render` per scrape."""

    def __init__(self, sources: MetricSources | None = None, *, process: bool = True) -> None:
        """`process`: also export the process's CPU, memory and file descriptors (`process_*`)."""
        self.sources = sources or MetricSources()
        self._rows: dict[tuple[str, str, str, int], _Row] = {}
        self._timings: dict[tuple[str, str], _Timing] = {}
        self._models = _Labelled(_Spend, 2)
        self._keys = _Labelled(_Spend, 3)
        self._tools = _Labelled(lambda: [0], 3)
        self._loops = _Labelled(lambda: [0], 1)
        self._rejections = _Labelled(lambda: [0], 2)
        self._findings = _Labelled(lambda: [0], 4)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(self))
        if process:
            ProcessCollector(registry=self.registry)

    # -- per call (the hot path) ----------------------------------------------------------------------------------

    def observe(self, entry: LogEntry, call: Call, outcome: Outcome | None, streamed: bool) -> None:
        """Count one finished call (see `hub.telemetry.metricsconfig.CallObserver`)."""
        row_key = (entry.door, entry.operation, entry.outcome, entry.status)
        row = self._rows.get(row_key)
        if row is None:
            row = self._new_row(row_key)
        row.count += 1
        timing = row.timing
        ms = entry.latency_ms
        whole = timing.whole  # the histograms' `observe`, inlined: this runs for every call
        whole.counts[bisect_left(_BOUNDS_MS, ms)] += 1
        whole.sum += ms
        operation = entry.operation
        if outcome is not None:
            upstream_ms = outcome.upstream_ms
            if upstream_ms is not None:
                upstream = timing.upstream
                upstream.counts[bisect_left(_BOUNDS_MS, upstream_ms)] += 1
                upstream.sum += upstream_ms
                if not streamed:
                    own = ms - upstream_ms if ms > upstream_ms else 0.0
                    overhead = timing.overhead
                    overhead.counts[bisect_left(_BOUNDS_MS, own)] += 1
                    overhead.sum += own
            if entry.tokens is not None:
                self._spend(entry, call, outcome, streamed)
            if entry.parent_id is None and operation in _LOOP_OPERATIONS and agent_loop(call, outcome.principal):
                self._loops.get((entry.outcome,))[0] += 1
        if operation == "mcp.tool":
            server, name = entry.server, entry.tool
            if server is None or name is None or call.scope is not None:  # not located through the registry's map
                tool = self.sources.tools().get(call.target)
                server, name = (tool.server, tool.original) if tool is not None else (OTHER, OTHER)
            self._tools.get((server, name, entry.outcome))[0] += 1
        reason = _REJECTIONS.get(entry.outcome)
        if reason is not None:
            key = entry.key_name if entry.key_id is not None else None  # a name only from a verified key
            self._rejections.get((reason, key or OTHER))[0] += 1

    def _new_row(self, row_key: tuple[str, str, str, int]) -> _Row:
        """The series of a (door, operation, outcome, status) seen for the first time (the doors, operations,
        outcome codes and statuses are the hub's own finite sets)."""
        timing_key = row_key[:2]
        timing = self._timings.get(timing_key)
        if timing is None:
            timing = self._timings[timing_key] = _Timing()
        row = self._rows[row_key] = _Row(timing)
        return row

    def _spend(self, entry: LogEntry, call: Call, outcome: Outcome, streamed: bool) -> None:
        """An LLM call's tokens and cost, by the deployment that served it and by the key that made it."""
        usage = outcome.value.usage if streamed and isinstance(outcome.value, ClosingStream) else outcome.usage
        if usage is None:
            return
        cache_write = usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
        output = usage.output_tokens
        counts = (usage.tokens - output, output, usage.cache_read_tokens, cache_write, usage.reasoning_tokens)
        usd = entry.cost_usd or 0.0
        provider = outcome.headers.get("x-agenthub-provider")
        if provider is not None:
            model = outcome.headers.get("x-agenthub-model", "")
            sources = self.sources
            if (provider, model) not in sources.deployments:
                model = OTHER
                if provider not in sources.providers:
                    provider = OTHER
            _add(self._models.get((provider, model)), counts, usd)
        principal = outcome.principal or call.principal
        if principal is not None:
            key: VirtualKey = principal.key
            _add(self._keys.get((key.name, key.team or "", key.customer or "")), counts, usd)

    def observe_findings(self, scope: Scope, verdict: Verdict) -> None:
        """Count a guardrail check's findings by guardrail, rule, direction and action (only checks that found
        something reach here: the guardrails stage calls it next to logging them)."""
        for finding in verdict.findings:
            self._findings.get((finding.guardrail, finding.rule, scope.direction, finding.action))[0] += 1

    # -- per scrape -----------------------------------------------------------------------------------------------

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape: (body, content type), in the format the `Accept` header asks for."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def families(self) -> Iterator[Metric]:
        """Every metric family of the hub, as of now."""
        yield from self._call_families()
        yield from self._spend_families()
        yield from self._mode_families()
        yield from self._state_families()

    def _call_families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "agenthub_requests",
            "Governed calls by door, operation, outcome (ok, tool_error, cancelled or an error code) and status.",
            labels=["door", "operation", "outcome", "status"],
        )
        for (door, operation, outcome, status), row in self._rows.items():
            requests.add_metric([door, operation, outcome, str(status)], row.count)
        yield requests
        helps = {
            "whole": ("agenthub_request_duration_seconds", "Whole calls, from the audit stage's view."),
            "upstream": (
                "agenthub_upstream_duration_seconds",
                "Time waiting on the upstream server or provider (a stream: until it opened).",
            ),
            "overhead": (
                "agenthub_overhead_duration_seconds",
                "The hub's own part of calls that reached an upstream and were not streamed: whole minus upstream.",
            ),
        }
        for part, (name, help_text) in helps.items():
            family = HistogramMetricFamily(name, help_text, labels=["door", "operation"])
            for (door, operation), timing in self._timings.items():
                histogram: _Histogram = getattr(timing, part)
                if part == "whole" or histogram.counts != [0] * len(histogram.counts):
                    family.add_metric([door, operation], histogram.buckets(), histogram.sum / 1000)
            yield family
        rejections = CounterMetricFamily(
            "agenthub_rejections",
            "Calls refused by a rate limit or a budget (reason: rate_limit or budget), by key.",
            labels=["reason", "key"],
        )
        for (reason, key), cell in self._rejections.values.items():
            rejections.add_metric([reason, key], cell[0])
        yield rejections
        tools = CounterMetricFamily(
            "agenthub_mcp_tool_calls",
            "MCP tool calls by server, tool and outcome.",
            labels=["server", "tool", "outcome"],
        )
        for labels, cell in self._tools.values.items():
            tools.add_metric(list(labels), cell[0])
        yield tools
        findings = CounterMetricFamily(
            "agenthub_guardrail_findings",
            "Guardrail findings by guardrail, rule, direction (input, output) and action (block, redact, log, error).",
            labels=["guardrail", "rule", "direction", "action"],
        )
        for labels, cell in self._findings.values.items():
            findings.add_metric(list(labels), cell[0])
        yield findings

    def _spend_families(self) -> Iterator[Metric]:
        label_sets = (("llm", ["provider", "model"], self._models), ("key", ["key", "team", "customer"], self._keys))
        for prefix, labels, spends in label_sets:
            by = " and ".join(labels)
            tokens = CounterMetricFamily(
                f"agenthub_{prefix}_tokens",
                f"LLM tokens by {by} and kind (input and output; cache_read and cache_write are part of input, "
                "reasoning part of output).",
                labels=[*labels, "kind"],
            )
            cost = CounterMetricFamily(
                f"agenthub_{prefix}_cost_usd",
                f"LLM cost in US dollars by {by} (unpriced models count 0).",
                labels=labels,
            )
            calls = CounterMetricFamily(
                f"agenthub_{prefix}_calls", f"LLM calls that reported usage by {by}.", labels=labels
            )
            for values, spend in spends.values.items():
                for kind, count in zip(_TOKEN_KINDS, spend.tokens, strict=True):
                    tokens.add_metric([*values, kind], count)
                cost.add_metric(list(values), spend.usd)
                calls.add_metric(list(values), spend.calls)
            yield tokens
            yield cost
            yield calls

    def _mode_families(self) -> Iterator[Metric]:
        """Code Mode and Agent Mode, derived from the per-call series."""
        runs = CounterMetricFamily("agenthub_code_runs", "Code Mode programs run, by outcome.", labels=["outcome"])
        inner = CounterMetricFamily(
            "agenthub_code_inner_calls", "Calls made by Code Mode programs, by operation.", labels=["operation"]
        )
        steps = CounterMetricFamily(
            "agenthub_agent_steps",
            "Agent Mode steps by operation (model turns: llm.chat or llm.messages; tool runs: mcp.tool, code.run).",
            labels=["operation"],
        )
        run_counts: dict[str, float] = {}
        inner_counts: dict[str, float] = {}
        step_counts: dict[str, float] = {}
        run_time = _Histogram()
        for (door, operation, outcome, _status), row in self._rows.items():
            if operation == "code.run":
                run_counts[outcome] = run_counts.get(outcome, 0) + row.count
            if door == "code":
                inner_counts[operation] = inner_counts.get(operation, 0) + row.count
            elif door == "agent":
                step_counts[operation] = step_counts.get(operation, 0) + row.count
        for (_door, operation), timing in self._timings.items():
            if operation == "code.run":
                run_time.counts = [a + b for a, b in zip(run_time.counts, timing.whole.counts, strict=True)]
                run_time.sum += timing.whole.sum
        for family, counts in ((runs, run_counts), (inner, inner_counts), (steps, step_counts)):
            for label, count in counts.items():
                family.add_metric([label], count)
            yield family
        duration = HistogramMetricFamily("agenthub_code_run_duration_seconds", "Code Mode program runs, whole.")
        duration.add_metric([], run_time.buckets(), run_time.sum / 1000)
        yield duration
        loops = CounterMetricFamily("agenthub_agent_loops", "Agent Mode loops run, by outcome.", labels=["outcome"])
        for (outcome,), cell in self._loops.values.items():
            loops.add_metric([outcome], cell[0])
        yield loops

    def _state_families(self) -> Iterator[Metric]:
        """What other parts of the hub keep, read now."""
        sources = self.sources
        up = GaugeMetricFamily(
            "agenthub_upstream_up", "1 when the upstream MCP server is connected.", labels=["server"]
        )
        state = GaugeMetricFamily(
            "agenthub_upstream_state", "The upstream's state (1 for the current one).", labels=["server", "state"]
        )
        reconnects = CounterMetricFamily(
            "agenthub_upstream_reconnects", "Reconnections to the upstream since start.", labels=["server"]
        )
        failures = CounterMetricFamily(
            "agenthub_upstream_failures", "Upstream requests that failed since start.", labels=["server"]
        )
        for name, upstream in sources.upstreams().items():
            health = upstream.health
            current = health.state.value
            up.add_metric([name], 1.0 if current == "ready" else 0.0)
            for each in ("connecting", "ready", "failed", "stopped"):
                state.add_metric([name, each], 1.0 if each == current else 0.0)
            reconnects.add_metric([name], health.reconnects)
            failures.add_metric([name], health.failures)
        yield from (up, state, reconnects, failures)
        sessions = GaugeMetricFamily("agenthub_mcp_sessions", "Open MCP sessions by key.", labels=["key"])
        for key, count in sources.sessions().items():
            sessions.add_metric([key], count)
        yield sessions
        figures = sources.pool()
        workers, busy, waiting = figures if figures is not None else (0, 0, 0)
        yield GaugeMetricFamily("agenthub_sandbox_workers", "Live Code Mode sandbox workers.", value=workers)
        yield GaugeMetricFamily("agenthub_sandbox_busy", "Sandbox workers running a program.", value=busy)
        yield GaugeMetricFamily("agenthub_sandbox_waiting", "Programs waiting for a sandbox worker.", value=waiting)


def _add(spend: _Spend, counts: tuple[int, int, int, int, int], usd: float) -> None:
    tokens = spend.tokens
    tokens[0] += counts[0]
    tokens[1] += counts[1]
    tokens[2] += counts[2]
    tokens[3] += counts[3]
    tokens[4] += counts[4]
    spend.usd += usd
    spend.calls += 1


class _Families(Collector):
    """The registry's view of `HubMetrics`: its families, built at each scrape."""

    def __init__(self, metrics: HubMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()

    def describe(self) -> Iterator[Metric]:
        return iter(())

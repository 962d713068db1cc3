"""Whether the hub traces, and where to: the `[telemetry]` section and the standard `OTEL_*` variables.

Kept apart from `hub.telemetry.traces` so that deciding costs no import: a hub that does not trace never loads
the OpenTelemetry SDK or its exporter (start-up time and idle memory), and composes no tracing wrapper.

Tracing is on when an endpoint is known: `[telemetry] otlp_endpoint`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_TRACES_EXPORTER=otlp` (the OTLP/HTTP default, `http://localhost:4318`).
`OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn it off whatever the file says. As for every setting,
the environment wins over the file: `OTEL_SERVICE_NAME` over `service_name`, `OTEL_TRACES_SAMPLER` (with
`OTEL_TRACES_SAMPLER_ARG`) over `sample_ratio`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "LogConfig",
    "TelemetrySection",
    "TraceConfig",
    "log_config",
    "trace_config",
    "tracing_on",
]

DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"
"""Where OTLP/HTTP goes when only `OTEL_TRACES_EXPORTER=otlp` is set (the specification's default)."""

_RATIO_SAMPLERS = {
    "always_on": 1.0,
    "always_off": 0.0,
    "parentbased_always_on": 1.0,
    "parentbased_always_off": 0.0,
}


class TelemetrySection(BaseModel):
    """`[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP."""

    model_config = ConfigDict(extra="forbid")

    otlp_endpoint: str | None = None
    """The collector's OTLP/HTTP base URL (`http://collector:4318`; spans go to `{endpoint}/v1/traces`), or the
    full `.../v1/traces` URL. Unset: no tracing (unless the `OTEL_*` variables ask for it)."""
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """The share of new traces recorded (a call whose client sent a sampled `traceparent` follows the client)."""
    service_name: str = "agenthub"
    """`service.name` of the spans and log records."""
    logs_endpoint: str | None = None
    """Where request-log records go over OTLP/HTTP (the full `.../v1/logs` URL, or a base URL); unset, they go to
    `otlp_endpoint` (`{endpoint}/v1/logs`) when that is set."""
    headers: dict[str, str] = Field(default_factory=dict[str, str])
    """Headers sent with every export (a collector's credentials); `OTEL_EXPORTER_OTLP_HEADERS` adds to them."""
    compression: Literal["none", "gzip"] = "none"
    """`gzip` compresses every export (`OTEL_EXPORTER_OTLP_COMPRESSION` wins)."""

    @field_validator("otlp_endpoint", "logs_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an OTLP endpoint must be an http:// or https:// URL")
        return value


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """Tracing as configured: where spans go, which share of root traces is kept, and the service name."""

    endpoint: str
    """The full OTLP/HTTP traces URL (`.../v1/traces`)."""
    sample_ratio: float
    service_name: str
    parent_based: bool = True
    """Whether a client's sampling decision (the `traceparent` flags) is followed."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers from the config file (the `OTEL_EXPORTER_OTLP_*HEADERS` variables are added when exporting)."""
    gzip: bool = False


def trace_config(section: TelemetrySection, environ: Mapping[str, str] | None = None) -> TraceConfig | None:
    """The tracing configuration in force, or None when tracing is off.

    Raises:
        ValueError: an `OTEL_*` variable has a value this hub cannot follow (named in the message).
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return None
    if exporter not in ("", "otlp"):
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported (use 'otlp' or 'none')")
    traces_url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or section.otlp_endpoint
    if traces_url:
        endpoint = traces_url
    elif base:
        endpoint = _traces_url(base)
    elif exporter == "otlp":
        endpoint = _traces_url(DEFAULT_OTLP_ENDPOINT)
    else:
        return None
    ratio, parent_based = _sampler(env, section.sample_ratio)
    service = env.get("OTEL_SERVICE_NAME", "").strip() or section.service_name
    return TraceConfig(endpoint, ratio, service, parent_based, _headers(section), section.compression == "gzip")


def _headers(section: TelemetrySection) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower(), value) for name, value in section.headers.items())


def _traces_url(base: str) -> str:
    """The signal URL of an OTLP/HTTP base URL (a URL that already names `/v1/traces` is kept)."""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Request-log export as configured: where OTLP log records go."""

    endpoint: str
    """The full OTLP/HTTP logs URL (`.../v1/logs`)."""
    service_name: str
    headers: tuple[tuple[str, str], ...] = ()
    gzip: bool = False


def log_config(section: TelemetrySection, environ: Mapping[str, str] | None = None) -> LogConfig | None:
    """Where request-log rows are exported as OTLP log records, or None when they are not: on with telemetry
    (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `logs_endpoint`, `otlp_endpoint`, in that
    order, or `OTEL_LOGS_EXPORTER=otlp`), off with `OTEL_LOGS_EXPORTER=none` or `OTEL_SDK_DISABLED=true`.

    Raises:
        ValueError: `OTEL_LOGS_EXPORTER` names an exporter this hub does not have.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_LOGS_EXPORTER", "").strip().lower()
    if exporter == "none":
        return None
    if exporter not in ("", "otlp"):
        raise ValueError(f"OTEL_LOGS_EXPORTER={exporter!r} is not supported (use 'otlp' or 'none')")
    logs_url = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if logs_url:
        endpoint = logs_url
    elif base:
        endpoint = _logs_url(base)
    elif section.logs_endpoint or section.otlp_endpoint:
        endpoint = _logs_url(section.logs_endpoint or section.otlp_endpoint or "")
    elif exporter == "otlp":
        endpoint = _logs_url(DEFAULT_OTLP_ENDPOINT)
    else:
        return None
    service = env.get("OTEL_SERVICE_NAME", "").strip() or section.service_name
    return LogConfig(endpoint, service, _headers(section), section.compression == "gzip")


def _logs_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/v1/logs") else base + "/v1/logs"


def _sampler(env: Mapping[str, str], default_ratio: float) -> tuple[float, bool]:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return default_ratio, True
    if name in _RATIO_SAMPLERS:
        return _RATIO_SAMPLERS[name], name.startswith("parentbased_")
    if name in ("traceidratio", "parentbased_traceidratio"):
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            ratio = float(raw) if raw else 1.0
        except ValueError:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a number") from None
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not between 0 and 1")
        return ratio, name.startswith("parentbased_")
    raise ValueError(f"OTEL_TRACES_SAMPLER={name!r} is not supported")


def tracing_on(section: TelemetrySection) -> bool:
    """Whether the hub traces (False too for a configuration it cannot follow: starting the hub reports that)."""
    try:
        return trace_config(section) is not None
    except ValueError:
        return False

"""When the hub traces and where to: `[telemetry]`, the standard `OTEL_*` variables (which win), and what a hub
that does not trace leaves out of its process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hub.settings import ConfigError, settings_from_dict
from hub.telemetry.traceconfig import TelemetrySection, TraceConfig, trace_config


def test_tracing_is_off_by_default() -> None:
    assert trace_config(TelemetrySection(), {}) is None


def test_the_config_file_turns_tracing_on() -> None:
    section = TelemetrySection(otlp_endpoint="http://collector:4318/", sample_ratio=0.25, service_name="gw")
    assert trace_config(section, {}) == TraceConfig("http://collector:4318/v1/traces", 0.25, "gw")


def test_the_standard_variables_turn_it_on_and_win_over_the_file() -> None:
    section = TelemetrySection(otlp_endpoint="http://file:4318", sample_ratio=0.5, service_name="file")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318",
        "OTEL_SERVICE_NAME": "env",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    assert trace_config(section, env) == TraceConfig("http://env:4318/v1/traces", 0.1, "env", parent_based=False)
    assert trace_config(TelemetrySection(), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom"}) == TraceConfig(
        "http://t:1/custom", 1.0, "agenthub"
    )
    assert trace_config(TelemetrySection(), {"OTEL_TRACES_EXPORTER": "otlp"}) == TraceConfig(
        "http://localhost:4318/v1/traces", 1.0, "agenthub"
    )


def test_the_variables_can_turn_a_configured_endpoint_off() -> None:
    section = TelemetrySection(otlp_endpoint="http://collector:4318")
    assert trace_config(section, {"OTEL_TRACES_EXPORTER": "none"}) is None
    assert trace_config(section, {"OTEL_SDK_DISABLED": "true"}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER='jaeger_remote' is not supported"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "is not a number"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "is not between 0 and 1"),
    ],
)
def test_a_variable_the_hub_cannot_follow_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        trace_config(TelemetrySection(otlp_endpoint="http://collector:4318"), env)


def test_a_bad_section_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        settings_from_dict({"telemetry": {"otlp_endpoint": "collector:4318"}})
    with pytest.raises(ConfigError, match="sample_ratio"):
        settings_from_dict({"telemetry": {"otlp_endpoint": "http://c:4318", "sample_ratio": 1.5}})


def _loaded(telemetry: dict[str, str], cwd: Path) -> list[str]:
    """The OpenTelemetry SDK modules a fresh interpreter holds after building the app for `telemetry`."""
    probe = textwrap.dedent(
        f"""
        import json, sys
        import hub.http
        from hub.app import open_hub
        from hub.settings import Settings
        settings = Settings.model_validate({{"servers": {{}}, "keys": [], "telemetry": {telemetry!r}}})
        hub.http.build_app(settings)
        open_hub(settings)._open_tracing()
        names = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http", "hub.telemetry.traces")
        print(json.dumps(sorted(m for m in names if m in sys.modules)))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, env=env, cwd=cwd
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_hub_that_does_not_trace_never_loads_the_sdk(tmp_path: Path) -> None:
    assert _loaded({}, tmp_path) == []
    # The hub writes and posts OTLP itself: the SDK's exporter (and its protobuf classes) stays out of a tracing hub.
    assert _loaded({"otlp_endpoint": "http://127.0.0.1:9"}, tmp_path) == ["hub.telemetry.traces", "opentelemetry.sdk"]


def test_serve_refuses_a_variable_it_cannot_follow_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli.main import main

    config = tmp_path / "agenthub.toml"
    config.write_text(
        f'[hub]\ndatabase = "sqlite:///{tmp_path}/hub.db"\n\n[telemetry]\notlp_endpoint = "http://127.0.0.1:9"\n'
    )
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "bogus")
    assert main(["serve", "--config", str(config)]) == 2
    assert "config error: OTEL_TRACES_SAMPLER='bogus' is not supported" in capsys.readouterr().err

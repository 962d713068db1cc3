"""Telemetry: what the hub tells operators about the traffic it governs, on open standards.

- Metrics (Prometheus, `GET /metrics`): `hub.telemetry.metrics` is the one place that knows the metric names and
  labels; `hub.telemetry.metricsconfig` holds the `[metrics]` section and the observer the audit stage calls, so
  that a hub with metrics off never loads `prometheus_client`.
- Traces (OpenTelemetry over OTLP/HTTP): `hub.telemetry.traces`, configured by `hub.telemetry.traceconfig`, so
  that a hub that does not trace never loads the OpenTelemetry SDK; spans are recorded by `hub.telemetry.spans`,
  batched by `hub.telemetry.batching`, written as OTLP protobuf by `hub.telemetry.otlpwire` and posted by
  `hub.telemetry.otlphttp`.
- Logs (OTLP/HTTP): `hub.telemetry.logexport` exports each request-log row as an OTLP log record, through the same
  batching, encoder and sender.
"""

"""Observability: Prometheus metrics (multi-process), OpenTelemetry tracing, JSON logs, readiness
and graceful shutdown. See docs/operations.md for what operators see and how to use it."""

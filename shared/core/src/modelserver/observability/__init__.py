"""Observability: Prometheus metrics, OpenTelemetry traces and the server's log lines."""

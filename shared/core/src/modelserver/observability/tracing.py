"""Optional OpenTelemetry tracing: a span per inference, with its phases as children.

On with ``--otel_endpoint URL`` or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``
/ ``OTEL_TRACES_EXPORTER`` variables; off, the request path pays one
function call. The trace travels down with the request's context. W3C
``traceparent`` from REST headers or gRPC metadata makes our span a child of
the caller's. Phases (decode, queue, predict,
encode) are timed as the request goes and turned into spans at its end, with
their real start and end times, so no span object lives across an await.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

_tracer: Any = None


def enabled() -> bool:
    return _tracer is not None


def setup(
    endpoint: str | None = None, service_name: str = "modelserver", exporter: Any = None
) -> bool:
    """Turn tracing on if an endpoint, the OTEL_* environment or an exporter asks for it."""
    global _tracer
    wanted = (
        exporter is not None
        or endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_TRACES_EXPORTER", "none") not in ("", "none")
    )
    if not wanted:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if endpoint:
            target = endpoint.rstrip("/")
            if not target.endswith("/v1/traces"):
                target += "/v1/traces"
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=target)))
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("modelserver")
    logger.info(
        "tracing on (%s)", endpoint or "OTEL_* environment" if exporter is None else "exporter"
    )
    return True


def shutdown() -> None:
    if _tracer is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


class RequestTrace:
    """Timings of one request, made into spans when it ends."""

    __slots__ = ("attributes", "carrier", "phases", "start_ns")

    def __init__(self, carrier: dict[str, str], attributes: dict[str, Any]) -> None:
        self.carrier = carrier
        self.attributes = attributes
        self.start_ns = time.time_ns()
        self.phases: list[tuple[str, int, int]] = []

    def phase(self, name: str, start_ns: int, end_ns: int) -> None:
        self.phases.append((name, start_ns, end_ns))

    def finish(self, status: int | str, error: str | None = None) -> None:
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        parent = extract(self.carrier)
        span = _tracer.start_span(
            "infer",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=self.start_ns,
            attributes={**self.attributes, "modelserver.status": str(status)},
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        inner = set_span_in_context(span)
        for name, start, end in self.phases:
            _tracer.start_span(name, context=inner, start_time=start).end(end_time=end)
        span.end(end_time=time.time_ns())


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def begin(
    headers: Iterable[tuple[str | bytes, str | bytes]], **attributes: Any
) -> RequestTrace | None:
    """Start a request's trace (None when tracing is off).

    ``headers`` are ASGI's raw pairs or gRPC metadata; only the two trace
    headers are decoded.
    """
    if _tracer is None:
        return None
    carrier = {}
    for key, value in headers:
        name = _text(key).lower()
        if name in ("traceparent", "tracestate"):
            carrier[name] = _text(value)
    return RequestTrace(carrier, attributes)

"""OpenTelemetry set-up shared by every process: one trace per song across the chain.

Tracing is always propagated (W3C trace context in gRPC metadata), so a trace started by
a client continues through the gateway and every service. Spans are exported over OTLP
only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set;
by default nothing leaves the process.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SimpleSpanProcessor

log = logging.getLogger(__name__)
_lock = threading.Lock()
_configured: str | None = None


def setup(service_name: str, exporter: SpanExporter | None = None) -> None:
    """Install a tracer provider for this process (idempotent).

    Args:
        service_name: e.g. "tabagent-separator"; becomes the `service.name` resource.
        exporter: an explicit exporter (tests pass an in-memory one); otherwise OTLP
            when an endpoint is configured, else none.
    """
    global _configured
    with _lock:
        if _configured is not None and exporter is None:
            return
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            log.info("exporting traces over OTLP as %s", service_name)
        if _configured is None:
            trace.set_tracer_provider(provider)
        _configured = service_name


def tracer(name: str) -> trace.Tracer:
    """The tracer for a module."""
    return trace.get_tracer(name)


def server_interceptors() -> list[Any]:
    """aio server interceptors that continue the caller's trace."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


def client_interceptors() -> list[Any]:
    """aio client interceptors that send the current trace context downstream."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())

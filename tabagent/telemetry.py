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

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

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


_UNTRACED = ("/grpc.health.v1.", "/grpc.reflection.")


class ServerTracing(grpc.aio.ServerInterceptor):
    """Continues the caller's trace in every RPC: one SERVER span per call.

    Written here rather than taken from opentelemetry-instrumentation-grpc, whose aio
    interceptor detaches its context from whatever task closes a streaming handler and
    logs a traceback whenever a stream is cancelled or aborted. This one attaches the
    span in the task that runs the handler and detaches it there, or not at all when the
    generator is closed from elsewhere (that task's context is discarded anyway).
    """

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method = details.method or ""
        if handler is None or method.startswith(_UNTRACED):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        parent = propagate.extract(metadata)
        service, _, name = method.lstrip("/").partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        if metadata.get("x-song-id"):
            attributes["song.id"] = metadata["x-song-id"]
        tracer = trace.get_tracer(__name__)

        def start() -> tuple[trace.Span, object]:
            span = tracer.start_span(method.lstrip("/"), context=parent, kind=trace.SpanKind.SERVER,
                                     attributes=attributes)
            return span, otel_context.attach(trace.set_span_in_context(span, parent))

        def close(span: trace.Span, context: Any, exc: BaseException | None) -> None:
            code = context.code() if hasattr(context, "code") else None
            if exc is not None and not isinstance(exc, (GeneratorExit, grpc.aio.AbortError)):
                span.record_exception(exc)
            if code not in (None, grpc.StatusCode.OK) or (exc is not None and code is None):
                span.set_attribute("rpc.grpc.status_code", getattr(code, "value", (2,))[0])
                span.set_status(Status(StatusCode.ERROR, getattr(code, "name", type(exc).__name__)))
            span.end()

        if handler.stream_stream or handler.unary_stream:
            inner = handler.stream_stream or handler.unary_stream

            async def streaming(request: Any, context: Any) -> Any:
                span, token = start()
                exc: BaseException | None = None
                try:
                    async for response in inner(request, context):
                        yield response
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    close(span, context, exc)
                    if not isinstance(exc, GeneratorExit):
                        otel_context.detach(token)

            make = grpc.stream_stream_rpc_method_handler if handler.stream_stream else grpc.unary_stream_rpc_method_handler
            return make(streaming, handler.request_deserializer, handler.response_serializer)

        inner = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: Any) -> Any:
            span, token = start()
            exc: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as e:
                exc = e
                raise
            finally:
                close(span, context, exc)
                otel_context.detach(token)

        make = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
        return make(unary, handler.request_deserializer, handler.response_serializer)


def server_interceptors() -> list[Any]:
    """aio server interceptors that continue the caller's trace."""
    return [ServerTracing()]


def client_interceptors() -> list[Any]:
    """aio client interceptors that send the current trace context downstream."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())

"""OpenTelemetry set-up shared by every process: one trace per song across the chain.

Tracing is always propagated (W3C trace context in gRPC metadata), so a trace started by
a client continues through the gateway and every service. Spans are exported over OTLP
only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set;
by default nothing leaves the process.

The shape of a song's trace:

    client CLIENT tabagent.v1.Gateway/Process
    └── gateway SERVER tabagent.v1.Gateway/Process       (tabagent.service=gateway)
        └── song
            ├── decode, beats
            ├── separate ── CLIENT tabagent.v1.Separator/Separate
            │               └── SERVER ...Separate (separator) ── separate.step ── separate.segment
            ├── transcribe (one per part) ── CLIENT ... ── SERVER ...Transcribe (transcriber)
            │               └── transcribe.windows, transcribe.model, transcribe.notes
            └── render ── CLIENT ... ── SERVER ...Render (video) ── render.step

Every span carries `tabagent.service`, the short name of the service whose work it is
(the server interceptor puts it in the context, `ServiceAttribute` copies it onto every
span started under it), so services sharing one process (the embedded chain, tests) stay
apart. Work done in worker threads gets its parent explicitly: the handler captures
`current_context()` and the thread starts its spans with `context=` (or `attached()`),
never through a thread-local context attached in another thread.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Token
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

log = logging.getLogger(__name__)

SERVICE_ATTRIBUTE = "tabagent.service"
_SERVICE_KEY = otel_context.create_key(SERVICE_ATTRIBUTE)

_lock = threading.Lock()
_provider: TracerProvider | None = None
_otlp = False


class ServiceAttribute(SpanProcessor):
    """Stamps every span with the `tabagent.service` found in its parent context."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if span.attributes and SERVICE_ATTRIBUTE in span.attributes:
            return
        name = otel_context.get_value(_SERVICE_KEY, parent_context)
        if name:
            span.set_attribute(SERVICE_ATTRIBUTE, str(name))

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""


def setup(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install this process's tracer provider, once; later calls may add exporters.

    Args:
        service_name: e.g. "tabagent-separator"; becomes the `service.name` resource
            (the first call's name wins: one process, one resource).
        exporter: an extra exporter, run synchronously (tests pass an in-memory one).
            Without one, spans go over OTLP when an endpoint is configured, else nowhere.

    Returns:
        The provider (the global one from now on).
    """
    global _provider, _otlp
    with _lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):  # e.g. installed by opentelemetry-instrument
                _provider = current
            else:
                _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
                trace.set_tracer_provider(_provider)
            _provider.add_span_processor(ServiceAttribute())
        if exporter is not None:
            _provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif not _otlp and (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _otlp = True
            log.info("exporting traces over OTLP as %s", service_name)
        return _provider


def flush(timeout: float = 5.0) -> None:
    """Send the spans still buffered (a server calls it as it stops; at exit the SDK
    shuts the exporters down, flushing again)."""
    with _lock:
        provider = _provider
    if provider is not None:
        provider.force_flush(int(timeout * 1000))


def tracer(name: str) -> trace.Tracer:
    """The tracer for a module."""
    return trace.get_tracer(name)


def current_context() -> otel_context.Context:
    """The active context, to hand to work that runs in another thread."""
    return otel_context.get_current()


def with_service(name: str, context: otel_context.Context | None = None) -> otel_context.Context:
    """A context whose spans are attributed to service `name` (see ServiceAttribute)."""
    return otel_context.set_value(_SERVICE_KEY, name, context)


@contextmanager
def attached(context: otel_context.Context | None) -> Iterator[None]:
    """Make `context` current in this thread for the block (attach and detach here).

    For worker threads: the handler captures `current_context()` and the thread runs
    its work under `with attached(ctx):`, so spans started inside find their parent.
    """
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def short_name(full_name: str) -> str:
    """The service label of a gRPC service: "tabagent.v1.VideoRenderer" -> "video".

    The first word of the last dotted component, lower case.
    """
    last = full_name.rsplit(".", 1)[-1]
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", last)
    return (words[0] if words else last).lower()


def open_server_span(
    method: str, metadata: dict[str, str], service: str = ""
) -> tuple[trace.Span, Token[otel_context.Context]]:
    """Start the SERVER span of one RPC, continuing the caller's trace, and make it current.

    Called by the server interceptor (tabagent.serving.interceptors) in the task that
    runs the handler, rather than taken from opentelemetry-instrumentation-grpc, whose aio
    interceptor detaches its context from whatever task closes a streaming handler and
    logs a traceback whenever a stream is cancelled or aborted.

    Args:
        method: the RPC's path, e.g. "/tabagent.v1.Separator/Separate".
        metadata: the call's string metadata (W3C trace context, x-song-id).
        service: the `tabagent.service` label of this server's spans and of every span
            started under them ("" leaves it unset).

    Returns:
        (span, token): end the span with `close_server_span`, detach the token in the
        same task.
    """
    parent = propagate.extract(metadata)
    if service:
        parent = with_service(service, parent)
    rpc_service, _, name = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": name}
    if service:
        attributes[SERVICE_ATTRIBUTE] = service
    if metadata.get("x-song-id"):
        attributes["song.id"] = metadata["x-song-id"]
    span = trace.get_tracer(__name__).start_span(
        method.lstrip("/"), context=parent, kind=trace.SpanKind.SERVER, attributes=attributes)
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


def close_server_span(span: trace.Span, context: Any, exc: BaseException | None) -> None:
    """End an RPC's SERVER span with the status the call ended with.

    Args:
        span: from `open_server_span`.
        context: the grpc.aio.ServicerContext (after an abort the code lives there).
        exc: the exception that ended the handler, or None.
    """
    code = context.code() if hasattr(context, "code") else None
    if exc is not None and not isinstance(exc, (GeneratorExit, grpc.aio.AbortError)):
        span.record_exception(exc)
    if code not in (None, grpc.StatusCode.OK) or (exc is not None and code is None):
        span.set_attribute("rpc.grpc.status_code", getattr(code, "value", (2,))[0])
        span.set_status(Status(StatusCode.ERROR, getattr(code, "name", type(exc).__name__)))
    span.end()


def client_interceptors() -> list[Any]:
    """aio client interceptors that send the current trace context downstream."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


@contextmanager
def untraced() -> Iterator[None]:
    """Calls made inside start no trace: their parent is a span that is not sampled.

    For background chatter (the gateway checking its services' health every second),
    which would otherwise fill the trace store with one-span traces.
    """
    parent = trace.NonRecordingSpan(trace.SpanContext(
        trace_id=0x1, span_id=0x1, is_remote=False, trace_flags=trace.TraceFlags(0)))
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        yield
    finally:
        otel_context.detach(token)

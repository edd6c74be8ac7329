"""The one server interceptor: every RPC counted while in flight, traced and measured.

Health checks and reflection are none of these (probes every few seconds would drown the
request counters, and a watcher must never hold a drain back): `NOT_TRACKED` is the one
list of what is left alone.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context

from tabagent import telemetry
from tabagent.metrics import ServiceMetrics, status_for

NOT_TRACKED = ("/grpc.health.v1.", "/grpc.reflection.")

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler once, keeping async generators generators.

    While a handler runs it is counted in `in_flight` (what a drain waits for, and the
    active streams of a service that binds no limiter); it runs in a SERVER span that
    continues the caller's trace (tabagent.telemetry.open_server_span); when it ends,
    `metrics` (if any) records its method, final status code and wall time.

    Args:
        service: the service's short name (`tabagent.service` on its spans).
        metrics: where requests are recorded; None records none.
    """

    def __init__(self, service: str = "", metrics: ServiceMetrics | None = None) -> None:
        self.service = service
        self.metrics = metrics
        self.in_flight = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        path = details.method or ""
        if handler is None or path.startswith(NOT_TRACKED):
            return handler
        for kind in _KINDS:
            inner = getattr(handler, kind)
            if inner is not None:
                return handler._replace(**{kind: self._wrap(inner, details)})
        return handler

    def _wrap(self, inner: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        path = details.method or ""
        method = path.rsplit("/", 1)[-1]
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        state = self

        def begin() -> tuple[Any, Any, float]:
            state.in_flight += 1
            span, token = telemetry.open_server_span(path, metadata, state.service)
            return span, token, time.perf_counter()

        def end(span: Any, token: Any, started: float, context: Any, exc: BaseException | None) -> None:
            try:
                if state.metrics is not None:
                    state.metrics.observe_request(method, status_for(exc, context), time.perf_counter() - started)
                telemetry.close_server_span(span, context, exc)
                # A generator closed from another task (a cancelled stream) runs this in
                # that task, whose context never had the token: detaching it there fails,
                # and the handler task's context is discarded anyway.
                if not isinstance(exc, GeneratorExit):
                    otel_context.detach(token)
            finally:
                state.in_flight -= 1

        if inspect.isasyncgenfunction(inner):

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                span, token, started = begin()
                exc: BaseException | None = None
                try:
                    async for response in inner(request, context):
                        yield response
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    end(span, token, started, context, exc)

            return stream

        async def call(request: Any, context: Any) -> Any:
            span, token, started = begin()
            exc: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as e:
                exc = e
                raise
            finally:
                end(span, token, started, context, exc)

        return call

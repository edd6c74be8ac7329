"""The one server interceptor: every RPC authenticated, counted while in flight, traced and measured.

`EXEMPT` is the one list of what is left alone. Health checks are none of these: probes
every few seconds would drown the request counters, a watcher must never hold a drain
back, and kubelet's probes carry no token. Reflection (when a server enables it) is not
counted but asks for the token like any RPC.
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
from tabagent.serving.auth import Authenticator, bearer, refusal

# Method prefix -> what the interceptor skips for it ("track": counting, spans, metrics;
# "auth": the bearer token).
EXEMPT: dict[str, frozenset[str]] = {
    "/grpc.health.v1.": frozenset({"track", "auth"}),
    "/grpc.reflection.": frozenset({"track"}),
}
NOT_TRACKED = tuple(prefix for prefix, skip in EXEMPT.items() if "track" in skip)
OPEN = tuple(prefix for prefix, skip in EXEMPT.items() if "auth" in skip)

UNAUTHENTICATED = ("this service needs a token: send 'authorization: Bearer <key>' metadata "
                   "(the SDK's api_key= or TABAGENT_API_KEY)")

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler once, keeping async generators generators.

    A call without a token `authenticate` accepts (health checks aside) gets a handler
    that ends it with UNAUTHENTICATED, counted and traced like any other. While a handler runs it is counted in `in_flight` (what a drain waits for, and the
    active streams of a service that binds no limiter); it runs in a SERVER span that
    continues the caller's trace (tabagent.telemetry.open_server_span); when it ends,
    `metrics` (if any) records its method, final status code and wall time.

    Args:
        service: the service's short name (`tabagent.service` on its spans).
        metrics: where requests are recorded; None records none.
        authenticate: the token check (tabagent.serving.auth); None lets every caller in.
        refusal_message: what a refused caller is told.
    """

    def __init__(self, service: str = "", metrics: ServiceMetrics | None = None,
                 authenticate: Authenticator | None = None, refusal_message: str = UNAUTHENTICATED) -> None:
        self.service = service
        self.metrics = metrics
        self.authenticate = authenticate
        self.refusal_message = refusal_message
        self.in_flight = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        path = details.method or ""
        if handler is None:
            return handler
        refused = (self.authenticate is not None and not path.startswith(OPEN)
                   and not self.authenticate(bearer(details.invocation_metadata)))
        if path.startswith(NOT_TRACKED) and not refused:
            return handler
        for kind in _KINDS:
            inner = getattr(handler, kind)
            if inner is not None:
                if refused:
                    handler = refusal(kind, handler, self.refusal_message)
                    inner = getattr(handler, kind)
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

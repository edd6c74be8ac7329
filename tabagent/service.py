"""Shared plumbing of every Tab Agent gRPC server: options, health, reflection, limits, errors."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tabagent.errors import BadConfig, NotReady, Overloaded, TabAgentError

log = logging.getLogger(__name__)

# Messages on the wire stay far below this (about 1 s of audio, or 1 MiB of file bytes);
# anything larger is refused by gRPC itself with RESOURCE_EXHAUSTED before it is parsed.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

T = TypeVar("T")

# Clients balance streams over the replicas DNS named when they connected (headless
# Services); a GOAWAY after this age makes them re-resolve and reach replicas the HPA
# added. No max_connection_age_grace: streams running on an old connection are never cut.
MAX_CONNECTION_AGE_MS = 5 * 60 * 1000


def env_int(name: str, default: int) -> int:
    """Read an integer setting from the environment, failing fast on garbage."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not an integer") from exc


def env_float(name: str, default: float) -> float:
    """Read a float setting from the environment, failing fast on garbage."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a number") from exc


def server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Channel arguments every server and client uses."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Client channel arguments: the server's plus round-robin over resolved addresses."""
    return server_options(max_message_bytes) + [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 0),
    ]


class Health:
    """grpc.health.v1 for one service: NOT_SERVING until the model is warm.

    The overall status ("") follows the service's; start-up and liveness are answered by
    the server being up at all (see docs/operations.md), readiness by SERVING here.
    """

    def __init__(self, server: grpc.aio.Server, service_names: Sequence[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self.service_names = list(service_names)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self.ready = False
        # The aio servicer starts "" as SERVING and set() is async: seed NOT_SERVING for
        # every name now, before the server starts and before any watcher exists.
        for name in ["", *self.service_names]:
            self.servicer._server_status[name] = health_pb2.HealthCheckResponse.NOT_SERVING

    async def set_serving(self, serving: bool) -> None:
        """Mark every service (and the overall status) SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.ready = serving
        for name in ["", *self.service_names]:
            await self.servicer.set(name, status)

    async def shutdown(self) -> None:
        """Tell watchers the server is going away (graceful drain follows)."""
        self.ready = False
        await self.servicer.enter_graceful_shutdown()


def new_server(
    service_full_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> tuple[grpc.aio.Server, Health]:
    """Create an aio server with health (NOT_SERVING) and reflection registered.

    Args:
        service_full_names: e.g. ["tabagent.v1.Separator"].
        interceptors: server interceptors (tracing, metrics).
        max_message_bytes: largest message accepted or sent.

    Returns:
        (server, health); the caller adds its servicer and a port, then starts it.
    """
    from tabagent import telemetry

    server = grpc.aio.server(
        interceptors=[*telemetry.server_interceptors(), *interceptors],
        options=[*server_options(max_message_bytes), ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS)],
    )
    status = Health(server, service_full_names)
    reflection.enable_server_reflection(
        [*service_full_names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
    )
    return server, status


def bind(server: grpc.aio.Server, address: str) -> int:
    """Bind an insecure port; returns the port (useful with port 0)."""
    port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"could not bind {address}")
    return port


@dataclass
class StreamLimiter:
    """Bounds the streams a service works on at once, with a bounded wait queue.

    Up to `max_active` streams run; up to `max_queued` more wait for a slot; beyond
    that a new stream is refused at once with RESOURCE_EXHAUSTED (never an OOM).
    """

    max_active: int
    max_queued: int
    name: str = "service"

    def __post_init__(self) -> None:
        if self.max_active < 1 or self.max_queued < 0:
            raise BadConfig("max_active must be >= 1 and max_queued >= 0")
        self._sem = asyncio.Semaphore(self.max_active)
        self.active = 0
        self.queued = 0

    @property
    def depth(self) -> int:
        """Streams waiting for a slot: the autoscaling signal."""
        return self.queued

    def slot(self) -> _Slot:
        """An async context manager holding one slot for the stream's lifetime."""
        return _Slot(self)


class _Slot:
    def __init__(self, limiter: StreamLimiter) -> None:
        self.limiter = limiter
        self.held = False

    async def __aenter__(self) -> _Slot:
        lim = self.limiter
        if lim.active >= lim.max_active and lim.queued >= lim.max_queued:
            raise Overloaded(
                f"{lim.name} is busy: {lim.active} streams running and {lim.queued} queued "
                f"(limits {lim.max_active}+{lim.max_queued}); retry later"
            )
        lim.queued += 1
        try:
            await lim._sem.acquire()
        finally:
            lim.queued -= 1
        lim.active += 1
        self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.limiter.active -= 1
            self.limiter._sem.release()
            self.held = False


def require_ready(health_state: Health, what: str) -> None:
    """Refuse work while the model is still loading."""
    if not health_state.ready:
        raise NotReady(f"{what} is still loading its model; retry when health reports SERVING")


Handler = Callable[..., AsyncIterator[T]]


def grpc_stream_errors(service: str) -> Callable[[Handler[T]], Handler[T]]:
    """Decorate an async-generator handler so errors end the stream with the right status.

    TabAgentError subclasses become their own code and message; anything unexpected is
    logged with its traceback and becomes INTERNAL with a short message (no stack trace
    reaches the caller). Cancellation propagates untouched.
    """

    def decorate(fn: Handler[T]) -> Handler[T]:
        @functools.wraps(fn)
        async def wrapper(self: Any, request_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
            try:
                async for response in fn(self, request_iterator, context):
                    yield response
            except TabAgentError as exc:
                log.info("%s stream ended: %s %s", service, exc.code.name, exc.message)
                await context.abort(exc.code, exc.message)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except grpc.RpcError as exc:  # a nested call failed and was not wrapped
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                log.warning("%s: downstream error %s", service, exc)
                await context.abort(code, f"{service}: downstream call failed: {getattr(exc, 'details', lambda: '')()}")
            except Exception as exc:
                log.exception("%s: unexpected failure", service)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"{service} failed unexpectedly ({type(exc).__name__}); the error is logged",
                )

        return wrapper

    return decorate


async def first_message(request_iterator: AsyncIterator[T], what: str) -> T:
    """Read the stream's first message (the config), with a clear error if there is none."""
    try:
        return await request_iterator.__anext__()
    except StopAsyncIteration:
        raise BadConfig(f"{what}: the stream ended before its config message") from None


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking model code off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def serve_until_signal(
    server: grpc.aio.Server,
    health_state: Health,
    warm: Callable[[], Awaitable[None]],
    grace: float = 30.0,
) -> None:
    """Start, warm the model (health NOT_SERVING meanwhile), serve until SIGTERM/SIGINT.

    On a signal: health goes NOT_SERVING so balancers stop sending, running streams get
    `grace` seconds to finish, then the server stops.
    """
    import signal

    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await warm()
    await health_state.set_serving(True)
    await stop.wait()
    log.info("shutting down: draining streams for up to %.0f s", grace)
    await health_state.shutdown()
    await server.stop(grace)

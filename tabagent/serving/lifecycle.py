"""Shared plumbing of every Tab Agent gRPC server: options, health, reflection, limits, errors."""

from __future__ import annotations

import asyncio
import functools
import inspect
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
    """grpc.health.v1 for one service, and what its shutdown needs to know.

    Meanings (see docs/operations.md): the service's name and the overall status ("")
    are NOT_SERVING from start-up until the model is warm, SERVING once it is (the
    readiness and start-up probes), and NOT_SERVING again for good once a drain begins.
    Liveness asks for "" and only fails on a process that no longer answers or drains.
    `in_flight` counts the RPCs being worked on (health checks and reflection aside, given
    the server's WorkCounter), so a drain knows when the streams it waits for are over.
    """

    def __init__(
        self, server: grpc.aio.Server, service_names: Sequence[str], work: WorkCounter | None = None
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self.service_names = list(service_names)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self.ready = False
        self.draining = False
        self.work = work
        # The aio servicer starts "" as SERVING and set() is async: seed NOT_SERVING for
        # every name now, before the server starts and before any watcher exists.
        for name in ["", *self.service_names]:
            self.servicer._server_status[name] = health_pb2.HealthCheckResponse.NOT_SERVING

    async def set_serving(self, serving: bool) -> None:
        """Mark every service (and the overall status) SERVING or NOT_SERVING.

        Ignored once a drain has begun: a model finishing its warm-up then must not
        put a shutting-down server back into rotation.
        """
        if self.draining:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.ready = serving
        for name in ["", *self.service_names]:
            await self.servicer.set(name, status)

    @property
    def in_flight(self) -> int | None:
        """RPCs being worked on now; None when the server does not count them."""
        return self.work.count if self.work is not None else None

    async def shutdown(self) -> None:
        """Go NOT_SERVING for good and tell watchers (the graceful drain follows)."""
        self.ready = False
        self.draining = True
        await self.servicer.enter_graceful_shutdown()


# Not work: probes, watchers and reflection never hold a drain back.
_NOT_WORK = ("/grpc.health.v1.", "/grpc.reflection.")


class WorkCounter(grpc.aio.ServerInterceptor):
    """A server interceptor counting the RPCs in progress, health and reflection aside."""

    def __init__(self) -> None:
        self.count = 0

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or (details.method or "").startswith(_NOT_WORK):
            return handler
        state = self
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is None:
                continue
            if inspect.isasyncgenfunction(inner):

                async def stream(request: Any, context: Any, inner: Any = inner) -> Any:
                    state.count += 1
                    try:
                        async for response in inner(request, context):
                            yield response
                    finally:
                        state.count -= 1

                return handler._replace(**{kind: stream})

            async def call(request: Any, context: Any, inner: Any = inner) -> Any:
                state.count += 1
                try:
                    return await inner(request, context)
                finally:
                    state.count -= 1

            return handler._replace(**{kind: call})
        return handler


def new_server(
    service_full_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    name: str | None = None,
) -> tuple[grpc.aio.Server, Health]:
    """Create an aio server with health (NOT_SERVING) and reflection registered.

    Every RPC gets a SERVER span continuing the caller's trace and is counted in
    `health.in_flight` (for the drain), before the given interceptors run.

    Args:
        service_full_names: e.g. ["tabagent.v1.Separator"].
        interceptors: further server interceptors (metrics).
        max_message_bytes: largest message accepted or sent.
        name: the service's short name on its spans (`tabagent.service`); default
            from the first full name ("tabagent.v1.VideoRenderer" -> "video").

    Returns:
        (server, health); the caller adds its servicer and a port, then starts it.
    """
    from tabagent import telemetry

    if name is None:
        name = telemetry.short_name(service_full_names[0]) if service_full_names else ""
    work = WorkCounter()
    server = grpc.aio.server(
        interceptors=[work, *telemetry.server_interceptors(name), *interceptors],
        options=[*server_options(max_message_bytes), ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS)],
    )
    status = Health(server, service_full_names, work)
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
    """Refuse work while the model is still loading, or once the server drains."""
    if health_state.draining:
        raise NotReady(f"{what} is shutting down; retry (another replica takes the stream)")
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


END_OF_AUDIO = object()  # put in a read-ahead queue after the last audio chunk


async def read_audio_ahead(request_iterator: AsyncIterator[Any], validator: Any, queue: asyncio.Queue[Any],
                           rpc: str) -> None:
    """Read and validate the AudioChunks that follow a stream's config into a bounded queue.

    A full queue stops the reading, so HTTP/2 flow control slows the client down instead
    of memory growing. The queue ends with END_OF_AUDIO, or with the exception that
    stopped the reading (the handler ends the stream with it).

    Args:
        request_iterator: the rest of the request stream (after the config message).
        validator: a tabagent.audio.ChunkValidator for this stream.
        queue: where the validated (frames, channels) arrays go.
        rpc: the RPC's name for messages, e.g. "Separate".
    """
    try:
        async for request in request_iterator:
            if request.WhichOneof("payload") != "audio":
                raise BadConfig(
                    f"only the first {rpc} message may carry a config; "
                    f"got another after {validator.seconds:.2f} s of audio"
                )
            await queue.put(validator.check(request.audio))
        await queue.put(END_OF_AUDIO)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # handed to the handler, which ends the stream with it
        await queue.put(exc)


async def first_message(request_iterator: AsyncIterator[T], what: str) -> T:
    """Read the stream's first message (the config), with a clear error if there is none."""
    try:
        return await request_iterator.__anext__()
    except StopAsyncIteration:
        raise BadConfig(f"{what}: the stream ended before its config message") from None


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking model code off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def drain(server: grpc.aio.Server, health_state: Health, grace: float = 30.0) -> float:
    """Stop a server gracefully: what SIGTERM does.

    Health goes NOT_SERVING at once (watchers are told), the server refuses new RPCs
    (GOAWAY: clients move new streams to other replicas) and running streams get up to
    `grace` seconds to finish. Health watchers (client-side health checking, a mesh) never
    end on their own, so once the counted work is over they are cut rather than allowed
    to hold the process for the rest of the grace period.

    Args:
        server: the running server.
        health_state: its Health (from new_server, so it counts the work in flight).
        grace: longest wait for running streams, in seconds; then they are cancelled.

    Returns:
        Seconds the drain took.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    log.info("draining: NOT_SERVING, refusing new streams, %d running get up to %.0f s",
             health_state.in_flight or 0, grace)
    stopping = asyncio.ensure_future(server.stop(grace))
    # Let the stop begin (the listeners close) before watchers hear NOT_SERVING, so a
    # caller reacting to the news finds new connections refused (UNAVAILABLE) rather
    # than a stream accepted and then cancelled by the stop.
    await asyncio.sleep(0)
    await health_state.shutdown()
    if health_state.in_flight is not None:
        while not stopping.done() and health_state.in_flight > 0:
            await asyncio.wait([stopping], timeout=0.05)
        if not stopping.done():
            await server.stop(None)  # only watchers are left
    await stopping
    took = loop.time() - started
    log.info("drained in %.1f s", took)
    return took


async def serve_until_signal(
    server: grpc.aio.Server,
    health_state: Health,
    warm: Callable[[], Awaitable[None]],
    grace: float = 30.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Start, warm the model (health NOT_SERVING meanwhile), serve until SIGTERM/SIGINT.

    On a signal (or `stop` being set) the server drains (see `drain`). A signal during
    warm-up drains at once, without waiting for the model.

    Args:
        server: the server, not started yet.
        health_state: its Health.
        warm: loads and warms the model (it may set SERVING itself; it is set after).
        grace: seconds running streams get on shutdown.
        stop: an event that triggers the same shutdown as a signal (tests set it);
            None creates one.
    """
    import signal

    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    stopped = asyncio.ensure_future(stop.wait())
    warming: asyncio.Future[None] | None = None
    try:
        await server.start()
        warming = asyncio.ensure_future(warm())
        await asyncio.wait([warming, stopped], return_when=asyncio.FIRST_COMPLETED)
        if warming.done():
            warming.result()  # a failed warm-up ends the process (the pod restarts)
            await health_state.set_serving(True)
            await stopped
        else:
            log.info("stopped during warm-up")
        await drain(server, health_state, grace)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for task in (warming, stopped):
            if task is not None and not task.done():
                task.cancel()
        await server.stop(0)

"""A service's life: build the server around its warm model, warm, serve, drain on SIGTERM.

Every service (separator, transcriber, video, gateway) starts the same way:

    SPEC = ServiceSpec("tabagent.v1.Separator", "separator", SeparatorServicer,
                       separator_pb2_grpc.add_SeparatorServicer_to_server)
    server, port = create_server(SPEC, config, holder)   # NOT_SERVING, not started
    await server.start()
    await server.warm()          # holder.warm(), model info published, then SERVING
    ...
    await run_service(SPEC, config, holder)              # all of it, until a signal

`config` is the service's frozen settings (`host`, `port`, `metrics_port`, `grace`,
`ServerSettings`); the servicer is built as `servicer(config, model, health, metrics)`.
Who may call comes from the config too: a model service takes `config.service_token`
(the gateway's shared secret), the gateway its users' keys (`ServiceSpec.authenticator`);
`config.reflection` turns gRPC reflection on (off by default).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from tabagent import telemetry
from tabagent.metrics import ServiceMetrics, start_http_server
from tabagent.serving.auth import Authenticator, token_check
from tabagent.serving.health import Health
from tabagent.serving.interceptors import UNAUTHENTICATED, RequestInterceptor
from tabagent.serving.model import WarmModel
from tabagent.serving.options import MAX_CONNECTION_AGE_MS, MAX_MESSAGE_BYTES, server_options

log = logging.getLogger(__name__)


class ServerSettings(Protocol):
    """What the lifecycle reads from a service's config."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def grace(self) -> float: ...


@dataclass(frozen=True)
class ServiceSpec:
    """What one service adds to the shared server set-up.

    Args:
        full_name: the gRPC service, e.g. "tabagent.v1.Separator".
        name: its short name: the metrics `service` label, `tabagent.service` on spans,
            and the process's trace resource `tabagent-<name>`.
        servicer: builds the servicer as `servicer(config, model, health, metrics)`.
        register: adds it to a server (the generated `add_<Service>Servicer_to_server`).
        authenticator: builds the token check from the config; None: the config's
            `service_token` (a model service, called by the gateway only).
        refusal: what a caller without a good token is told (UNAUTHENTICATED).
    """

    full_name: str
    name: str
    servicer: Callable[[Any, Any, Health, ServiceMetrics], Any]
    register: Callable[[Any, grpc.aio.Server], None]
    authenticator: Callable[[Any], Authenticator | None] | None = None
    refusal: str = UNAUTHENTICATED

    def check_for(self, config: Any) -> Authenticator | None:
        """The token check this service applies under `config` (None: every caller passes)."""
        if self.authenticator is not None:
            return self.authenticator(config)
        return token_check(getattr(config, "service_token", ""))


class Companion(Protocol):
    """Something a service process runs beside its gRPC server (the gateway's HTTP API)."""

    name: str

    async def run(self) -> None:
        """Serve until `drain()` has finished; returning earlier ends the process."""
        ...

    async def drain(self, grace: float) -> None:
        """Finish (running work gets up to `grace` s) and make `run()` return."""
        ...


def new_server(
    service_full_names: Sequence[str],
    metrics: ServiceMetrics | None = None,
    name: str | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    authenticate: Authenticator | None = None,
    reflection_on: bool = False,
    refusal: str = UNAUTHENTICATED,
) -> tuple[grpc.aio.Server, Health]:
    """Create an aio server with health (NOT_SERVING) registered, and reflection if asked.

    Every RPC goes through one RequestInterceptor: refused with UNAUTHENTICATED unless
    `authenticate` accepts its bearer token (health checks aside), counted in
    `health.in_flight` (for the drain), run in a SERVER span continuing the caller's
    trace, and recorded in `metrics` (health and reflection aside).

    Args:
        service_full_names: e.g. ["tabagent.v1.Separator"].
        metrics: the service's metrics (requests; active streams until a limiter is
            bound); None records none.
        name: the service's short name on its spans (`tabagent.service`); default
            from the first full name ("tabagent.v1.VideoRenderer" -> "video").
        max_message_bytes: largest message accepted or sent.
        authenticate: the token check; None lets every caller in.
        reflection_on: answer gRPC reflection (it tells anyone who asks what the server
            serves, so it is off unless a setting turns it on).
        refusal: the UNAUTHENTICATED message.

    Returns:
        (server, health); the caller adds its servicer and a port, then starts it.
    """
    if name is None:
        name = telemetry.short_name(service_full_names[0]) if service_full_names else ""
    requests = RequestInterceptor(name, metrics, authenticate, refusal)
    server = grpc.aio.server(
        interceptors=[requests],
        options=[*server_options(max_message_bytes), ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS)],
    )
    status = Health(server, service_full_names, lambda: requests.in_flight)
    if metrics is not None:
        metrics.bind_in_flight(lambda: requests.in_flight)
    if reflection_on:
        reflection.enable_server_reflection(
            [*service_full_names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
        )
    return server, status


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "localhost")


def bind(server: grpc.aio.Server, address: str) -> int:
    """Bind an insecure port; returns the port (useful with port 0)."""
    port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"could not bind {address}")
    return port


class ServiceServer:
    """A service's gRPC server with what its life needs: health, metrics, servicer, model.

    Built by `create_server`; `start()`, then `warm()`, which is the one place a service
    becomes SERVING.
    """

    def __init__(self, spec: ServiceSpec, server: grpc.aio.Server, health: Health,
                 metrics: ServiceMetrics, model: WarmModel, servicer: Any) -> None:
        self.spec = spec
        self.server = server
        self.health = health
        self.metrics = metrics
        self.model = model
        self.servicer = servicer
        self._follower: asyncio.Future[Any] | None = None

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None

    async def start(self) -> None:
        """Start accepting RPCs (NOT_SERVING until `warm()`)."""
        await self.server.start()

    async def warm(self) -> None:
        """Load and warm the model, publish what it serves, then report SERVING."""
        started = time.perf_counter()
        info = await self.model.warm(self.metrics)
        took = time.perf_counter() - started
        if info is not None:
            self.metrics.set_model(info.name, info.version, info.device, info.fallback, took)
        await self.health.set_serving(True)
        log.info("%s SERVING after %.2f s of warm-up", self.spec.name, took)
        follow = getattr(self.model, "follow", None)
        if follow is not None and self._follower is None:
            # A model that depends on others (the gateway's services) keeps health in step
            # with them from now on: NOT_SERVING while one is down or warming.
            self._follower = asyncio.ensure_future(follow(self.health.set_serving))

    async def stop(self, grace: float | None) -> None:
        """Stop the gRPC server (running RPCs get `grace` seconds; None cancels them)."""
        self._stop_following()
        await self.server.stop(grace)

    async def drain(self, grace: float) -> float:
        """Stop gracefully, as SIGTERM does (see `drain`)."""
        self._stop_following()
        return await drain(self.server, self.health, grace)

    async def serve(self, grace: float, stop: asyncio.Event | None = None,
                    beside: Sequence[Companion] = ()) -> None:
        """Start, warm, serve until SIGTERM/SIGINT (or `stop`), drain (see `serve_until_signal`)."""
        try:
            await serve_until_signal(self.server, self.health, self.warm, grace, stop, beside)
        finally:
            self._stop_following()


def create_server(spec: ServiceSpec, config: ServerSettings, model: WarmModel,
                  address: str | None = None,
                  metrics: ServiceMetrics | None = None) -> tuple[ServiceServer, int]:
    """Build a service's server around its model (NOT_SERVING until `warm()`; not started).

    Args:
        spec: the service.
        config: its settings (`host` and `port` unless `address` is given).
        model: its warm model.
        address: bind address; default `config.host:config.port` (port 0 picks one).
        metrics: where to record metrics; None keeps them in a private registry.

    Returns:
        (server, bound port).
    """
    metrics = metrics or ServiceMetrics(spec.name)
    check = spec.check_for(config)
    server, health_state = new_server([spec.full_name], metrics, spec.name, authenticate=check,
                                      reflection_on=bool(getattr(config, "reflection", False)),
                                      refusal=spec.refusal)
    if check is None and not _loopback(address or f"{config.host}:{config.port}"):
        log.warning("%s: no token configured: any caller that reaches %s may use it (set %s)",
                    spec.name, address or f"{config.host}:{config.port}",
                    "TABAGENT_API_KEY" if spec.authenticator is not None else "TABAGENT_SERVICE_TOKEN")
    servicer = spec.servicer(config, model, health_state, metrics)
    spec.register(servicer, server)
    port = bind(server, address or f"{config.host}:{config.port}")
    return ServiceServer(spec, server, health_state, metrics, model, servicer), port


async def run_service(spec: ServiceSpec, config: ServerSettings, model: WarmModel, *,
                      metrics: ServiceMetrics | None = None, stop: asyncio.Event | None = None,
                      beside: Sequence[Companion] = ()) -> None:
    """Run a service process until SIGTERM/SIGINT: start, warm, serve, drain, release.

    Tracing is set up as `tabagent-<name>`; metrics are served on `config.metrics_port`
    (when set); on the way out the model is closed and buffered spans are flushed.

    Args:
        spec: the service.
        config: its settings.
        model: its warm model (closed at the end).
        metrics: the service's metrics; None creates them.
        stop: an event that triggers the same shutdown as a signal (tests).
        beside: what else the process serves (the gateway's HTTP API).
    """
    telemetry.setup(f"tabagent-{spec.name}")
    server, port = create_server(spec, config, model, metrics=metrics)
    # Metrics follow the gRPC port onto loopback (`tabagent up`); elsewhere every interface.
    metrics_addr = "127.0.0.1" if _loopback(f"{config.host}:0") else "0.0.0.0"
    http = (start_http_server(config.metrics_port, server.metrics.registry, addr=metrics_addr)
            if config.metrics_port else None)
    log.info("%s listening on %s:%d", spec.name, config.host, port)
    try:
        await server.serve(config.grace, stop, beside)
    finally:
        await model.close()
        if http is not None:
            http.close()
        telemetry.flush()


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
    beside: Sequence[Companion] = (),
) -> None:
    """Start, warm the model (health NOT_SERVING meanwhile), serve until SIGTERM/SIGINT.

    On a signal (or `stop` being set) the server drains (see `drain`), and so does
    everything `beside` it, at the same time. A signal during warm-up drains at once,
    without waiting for the model. A companion that stops on its own ends the process.

    Args:
        server: the server, not started yet.
        health_state: its Health.
        warm: loads and warms the model and reports SERVING (ServiceServer.warm).
        grace: seconds running streams get on shutdown.
        stop: an event that triggers the same shutdown as a signal (tests set it);
            None creates one.
        beside: what else the process serves, started with the server.
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    warming: asyncio.Future[Any] | None = None
    running: dict[asyncio.Future[Any], Companion] = {}
    started = False
    try:
        await server.start()
        started = True
        running = {asyncio.ensure_future(c.run()): c for c in beside}
        warming = asyncio.ensure_future(warm())
        await asyncio.wait([warming, stopped, *running], return_when=asyncio.FIRST_COMPLETED)
        if warming.done():
            warming.result()  # a failed warm-up ends the process (the pod restarts)
            await asyncio.wait([stopped, *running], return_when=asyncio.FIRST_COMPLETED)
        elif stopped.done():
            log.info("stopped during warm-up")
        for task, companion in running.items():
            if task.done():
                task.result()
                raise SystemExit(f"the {companion.name} stopped unexpectedly")
    finally:
        if started:
            await asyncio.gather(drain(server, health_state, grace), *(c.drain(grace) for c in beside))
        await asyncio.gather(*running, return_exceptions=True)
        for sig in installed:
            loop.remove_signal_handler(sig)
        for pending in (warming, stopped):
            if pending is not None and not pending.done():
                pending.cancel()
        await server.stop(0)

"""The gateway process: the gRPC server and the HTTP API on one event loop until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from gateway.config import GatewayConfig
from gateway.grpc_api import create_server
from gateway.http_api.app import create_app
from tabagent import metrics as tabmetrics
from tabagent import serving, telemetry

log = logging.getLogger(__name__)

GRACE_SECONDS = 30.0        # running streams and HTTP jobs get this long on SIGTERM
READY_TIMEOUT = 600.0       # how long to wait for the model services at start-up


class UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve()` owns SIGTERM/SIGINT for both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


def http_host(host: str) -> str:
    """The gRPC bind host ("[::]") as uvicorn wants it ("::")."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP listening socket (IPv6 ones accept IPv4 too); exits with a clear message if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"could not bind the HTTP port {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def clean_grpc_leftovers(data_dir: str) -> None:
    """Remove what gRPC streams of a previous process left (they never outlive a process)."""
    leftovers = Path(data_dir) / "grpc"
    if leftovers.is_dir():
        shutil.rmtree(leftovers, ignore_errors=True)


async def serve(config: GatewayConfig, grace: float = GRACE_SECONDS) -> None:
    """Run gRPC (config.port) and HTTP (config.http_port) until SIGTERM or SIGINT.

    Both are NOT_SERVING (gRPC health, /readyz) until every model service answers. On a
    signal: health goes NOT_SERVING, gRPC streams and running HTTP jobs get `grace`
    seconds, HTTP jobs still running then are recorded as interrupted, queued HTTP jobs
    stay queued for the next start.
    """
    sock = bind_http(http_host(config.host), config.http_port)
    telemetry.setup("tabagent-gateway")
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    clean_grpc_leftovers(config.data_dir)
    server, port, servicer = create_server(config)
    metrics = getattr(servicer, "metrics", None) or tabmetrics.ServiceMetrics("gateway")
    app = create_app(config, servicer.downstream, metrics=metrics, shutdown_grace=grace)
    http = UvicornServer(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False,
                                        timeout_graceful_shutdown=5))
    metrics_server = tabmetrics.start_http_server(config.metrics_port, metrics.registry) \
        if config.metrics_port else None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    await server.start()
    http_task = asyncio.create_task(http.serve(sockets=[sock]), name="http")
    log.info("gateway listening: gRPC on port %d, HTTP on port %d", port, sock.getsockname()[1])
    try:
        warm = asyncio.create_task(servicer.downstream.wait_ready(timeout=READY_TIMEOUT))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({warm, stopped, http_task}, return_when=asyncio.FIRST_COMPLETED)
        if warm.done():
            warm.result()  # a timeout here ends the process: the orchestrator restarts it
            await servicer.health.set_serving(True)
            log.info("every service is SERVING; the gateway is ready")
            await asyncio.wait({stopped, http_task}, return_when=asyncio.FIRST_COMPLETED)
        else:
            warm.cancel()
        if http_task.done():
            http_task.result()
            raise SystemExit("the HTTP server stopped unexpectedly")
        log.info("shutting down: draining streams and jobs for up to %.0f s", grace)
    finally:
        await asyncio.gather(serving.drain(server, servicer.health, grace), app.state.stop_jobs())
        http.should_exit = True
        await asyncio.gather(http_task, return_exceptions=True)
        await servicer.downstream.close()
        if metrics_server is not None:
            metrics_server.close()

"""Serving the HTTP API beside the gateway's gRPC server: uvicorn on a socket bound up front."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's lifecycle owns SIGTERM/SIGINT."""

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


class HttpServer:
    """The HTTP API as a companion of the gRPC server (tabagent.serving.Companion).

    Args:
        app: from gateway.http_api.app.create_app.
        sock: the bound listening socket.
        graceful_seconds: how long uvicorn waits for open connections once told to exit.
    """

    name = "HTTP server"

    def __init__(self, app: FastAPI, sock: socket.socket, graceful_seconds: int = 5) -> None:
        self.app = app
        self.sock = sock
        self.server = UvicornServer(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False,
                                                   timeout_graceful_shutdown=graceful_seconds))

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.sock.getsockname()[1])

    async def run(self) -> None:
        """Serve until `drain()` tells uvicorn to exit."""
        log.info("HTTP API on port %d", self.port)
        await self.server.serve(sockets=[self.sock])

    async def drain(self, grace: float) -> None:
        """Stop the jobs (running ones get the app's shutdown grace; queued ones stay
        queued for the next start), then let uvicorn exit."""
        await self.app.state.stop_jobs()
        self.server.should_exit = True

"""The gateway process: the gRPC server and the HTTP API on one event loop until SIGTERM."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.grpc_api import SPEC
from gateway.http_api.app import create_app
from gateway.http_api.server import HttpServer, bind_http, http_host
from tabagent import serving

log = logging.getLogger(__name__)


def clean_grpc_leftovers(data_dir: str) -> None:
    """Remove what gRPC streams of a previous process left (they never outlive a process)."""
    leftovers = Path(data_dir) / "grpc"
    if leftovers.is_dir():
        shutil.rmtree(leftovers, ignore_errors=True)


async def serve(config: GatewayConfig) -> None:
    """Run gRPC (config.port) and HTTP (config.http_port) until SIGTERM or SIGINT.

    Both are NOT_SERVING (gRPC health, /readyz) until every model service answers. On a
    signal: health goes NOT_SERVING, gRPC streams and running HTTP jobs get `config.grace`
    seconds, HTTP jobs still running then are recorded as interrupted, queued HTTP jobs
    stay queued for the next start.
    """
    sock = bind_http(http_host(config.host), config.http_port)
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    clean_grpc_leftovers(config.data_dir)
    downstream = Downstream(config)
    app = create_app(config, downstream, metrics=downstream.metrics, shutdown_grace=config.grace)
    await serving.run_service(SPEC, config, downstream, metrics=downstream.metrics,
                              beside=[HttpServer(app, sock)])

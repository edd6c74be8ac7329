"""The embedded chain: every service in this process on loopback gRPC (`tabagent run`).

Services named by address are used as they are; the others are started here, each with
its model loaded and warmed once, behind real gRPC servers on 127.0.0.1 ports picked by
the OS, exactly as they run in their own processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import tempfile
from pathlib import Path
from typing import Any

import grpc

from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.grpc_api import GatewayServicer, create_server
from tabagent.metrics import ServiceMetrics
from tabagent.serving import ServiceServer
from tabagent.serving.auth import service_token_from_env

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class LocalChain:
    """Starts the services a song needs and a gateway in front of them.

    Args:
        separator_addr, transcriber_addr, video_addr: running services to use instead of
            starting them here ("" = start here).
        video: start (or use) a video renderer.
        separator_model: the separator model to load ("" = its default).
        model_dir: a local Demucs model folder.
        offline: never download separator weights (`--offline`; TABAGENT_OFFLINE=1 also works).
        progress: a download progress callback for the separator's weights (e.g. a bar).

    After `start()`, `metrics` holds the ServiceMetrics of the gateway and of every
    service started here (by name), `servers` their gRPC servers, and `servicer` the
    gateway's servicer.
    """

    def __init__(self, separator_addr: str = "", transcriber_addr: str = "", video_addr: str = "",
                 video: bool = True, separator_model: str = "", model_dir: str | None = None,
                 offline: bool = False, progress: Any = None) -> None:
        self.addrs = {"separator": separator_addr, "transcriber": transcriber_addr,
                      "video": video_addr if video else ""}
        self.video = video
        self.separator_model = separator_model
        self.model_dir = Path(model_dir) if model_dir else None
        self.offline = offline
        self.progress = progress
        # The services answer this gateway only: the deployment's token, or one made for
        # this chain when every service runs here.
        remote = any(v for v in self.addrs.values())
        self.token = service_token_from_env() or ("" if remote else secrets.token_urlsafe(24))
        self._servers: list[ServiceServer] = []
        self._embedded: dict[str, str] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.gateway_addr = ""
        self.metrics: dict[str, ServiceMetrics] = {}
        self.servers: dict[str, grpc.aio.Server] = {}
        self.servicer: GatewayServicer | None = None

    def describe(self) -> str:
        where = {k: ("embedded " + v if k in self._embedded else v) for k, v in self.addrs.items() if v}
        return ", ".join(f"{k} at {v}" for k, v in where.items())

    async def start(self) -> None:
        """Start and warm whatever is not given by address, then the gateway."""
        warms = []
        if not self.addrs["separator"]:
            warms.append(self._start_separator())
        if not self.addrs["transcriber"]:
            warms.append(self._start_transcriber())
        if self.video and not self.addrs["video"]:
            warms.append(self._start_video())
        await asyncio.gather(*warms)
        self._tmp = tempfile.TemporaryDirectory(prefix="tabagent-run-")
        config = dataclasses.replace(
            GatewayConfig.from_env(),
            separator_addr=self.addrs["separator"],
            transcriber_addr=self.addrs["transcriber"],
            video_addr=self.addrs["video"],
            data_dir=self._tmp.name,
            service_token=self.token,
        )
        server, port = create_server(config, Downstream(config, ready_timeout=900.0), address=f"{LOOPBACK}:0")
        self.servicer = server.servicer
        self.gateway_addr = await self._run(server, "gateway", port)

    async def _start_separator(self) -> None:
        from separator_svc.config import SeparatorConfig
        from separator_svc.holder import ModelHolder
        from separator_svc.server import create_server as create

        config = SeparatorConfig.from_env(model_dir=self.model_dir, offline=self.offline or None)
        changes: dict[str, Any] = {"metrics_port": 0, "service_token": self.token}
        if self.separator_model:
            changes["models"] = (self.separator_model,)
        config = dataclasses.replace(config, **changes)
        server, port = create(config, ModelHolder.from_config(config, progress=self.progress), address=f"{LOOPBACK}:0")
        self.addrs["separator"] = self._embedded["separator"] = await self._run(server, "separator", port)

    async def _start_transcriber(self) -> None:
        from transcriber_svc.config import TranscriberConfig
        from transcriber_svc.holder import ModelHolder
        from transcriber_svc.server import create_server as create

        config = dataclasses.replace(TranscriberConfig.from_env(), metrics_port=0, service_token=self.token)
        server, port = create(config, ModelHolder.from_config(config), address=f"{LOOPBACK}:0")
        self.addrs["transcriber"] = self._embedded["transcriber"] = await self._run(server, "transcriber", port)

    async def _start_video(self) -> None:
        from video_svc.config import VideoConfig
        from video_svc.holder import ModelHolder
        from video_svc.server import create_server as create

        config = dataclasses.replace(VideoConfig.from_env(), metrics_port=0, service_token=self.token)
        server, port = create(config, ModelHolder(config), address=f"{LOOPBACK}:0")
        self.addrs["video"] = self._embedded["video"] = await self._run(server, "video", port)

    async def _run(self, server: ServiceServer, name: str, port: int) -> str:
        """Start a server and warm its model (SERVING once warm); returns its address."""
        await server.start()
        self._servers.append(server)
        self.servers[name] = server.server
        self.metrics[name] = server.metrics
        await server.warm()
        return f"{LOOPBACK}:{port}"

    async def stop(self) -> None:
        """Stop every server started here (in reverse order) and release the models."""
        for server in reversed(self._servers):
            await server.stop(grace=2.0)
        for server in reversed(self._servers):
            await server.model.close()
        self._servers.clear()
        self.servers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> LocalChain:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

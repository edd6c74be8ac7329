"""Helpers for the HTTP API tests: a gateway app served by uvicorn in the test's loop, and an SSE reader."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.http_api.app import create_app
from gateway.http_api.server import HttpServer
from launcher.embedded import LocalChain


def gateway_config(chain: LocalChain, data_dir: Path, **changes: Any) -> GatewayConfig:
    """Settings for an HTTP gateway in front of `chain`'s services, storing under `data_dir`."""
    values: dict[str, Any] = {"separator_addr": chain.addrs["separator"], "transcriber_addr": chain.addrs["transcriber"],
                              "video_addr": chain.addrs.get("video", ""), "data_dir": str(data_dir),
                              "service_token": chain.token}
    return dataclasses.replace(GatewayConfig(), **{**values, **changes})


class HttpGateway:
    """The HTTP API on 127.0.0.1 (a port the OS picks), served by uvicorn in this event loop."""

    def __init__(self, config: GatewayConfig, **app_args: Any) -> None:
        self.config = config
        self.downstream = Downstream(config)
        self.app = create_app(config, self.downstream, **app_args)
        self.server: HttpServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> HttpGateway:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = HttpServer(self.app, sock, graceful_seconds=2)
        self.task = asyncio.create_task(self.server.run())
        while not self.server.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        """A graceful stop: running jobs are recorded as interrupted, queued ones stay queued."""
        if self.server is not None and self.task is not None:
            await self.server.drain(0.0)
            await self.task
        await self.downstream.close()

    def client(self, key: str = "", timeout: float = 60.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> HttpGateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def sse(client: httpx.AsyncClient, url: str, **kwargs: Any) -> AsyncIterator[tuple[str, dict[str, Any], str]]:
    """(event, data, id) of every Server-Sent Event at `url` until the server ends the stream."""
    async with client.stream("GET", url, **kwargs) as resp:
        resp.raise_for_status()
        assert resp.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in resp.aiter_lines():
            if not line:
                if "data" in fields:
                    yield fields.get("event", "message"), json.loads(fields["data"]), fields.get("id", "")
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value


async def follow(client: httpx.AsyncClient, url: str, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a job's stream, to its end."""
    return [(event, data) async for event, data, _ in sse(client, url, **kwargs)]


def files_under(path: Path) -> set[str]:
    """Every file below `path` (relative names), SQLite's own files left out."""
    return {str(p.relative_to(path)) for p in path.rglob("*")
            if p.is_file() and not p.name.startswith("jobs.db")}

"""The gateway's side of the chain: one channel per model service, and waiting for them.

`Downstream` is the gateway's warm model (tabagent.serving.WarmModel): the gateway is
SERVING once every service it calls is.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.chain import Stubs
from gateway.config import GatewayConfig
from tabagent import serving, telemetry
from tabagent.metrics import ServiceMetrics
from tabagent.serving.auth import bearer_interceptors
from tabagent.v1 import audio_pb2, separator_pb2_grpc, transcriber_pb2_grpc, video_pb2_grpc

READY_TIMEOUT = 600.0       # how long to wait for the model services at start-up


def open_channel(address: str, token: str = "") -> grpc.aio.Channel:
    """A channel to a service; `dns:///name:port` balances over every replica.

    Every call on it carries `token` (the shared service token) when one is set.
    """
    return grpc.aio.insecure_channel(
        address, options=serving.channel_options(),
        interceptors=[*telemetry.client_interceptors(), *bearer_interceptors(token)],
    )


class Downstream:
    """Channels to the three services, opened once per gateway process.

    Args:
        config: where the services are (`*_addr`: `host:port`, `dns:///name:port` or
            `ipv4:a:p,b:q`; several addresses are balanced round-robin).
        metrics: where the chain records stage timings; None creates the gateway's.
        ready_timeout: how long `warm()` waits for every service to be SERVING; past it
            the process ends (the orchestrator restarts it).
    """

    def __init__(self, config: GatewayConfig, metrics: ServiceMetrics | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.metrics = metrics or ServiceMetrics("gateway")
        self.ready_timeout = ready_timeout
        self.channels = {
            "separator": open_channel(config.separator_addr, config.service_token),
            "transcriber": open_channel(config.transcriber_addr, config.service_token),
        }
        if config.video_addr:
            self.channels["video"] = open_channel(config.video_addr, config.service_token)
        self.stubs = Stubs(
            separator=separator_pb2_grpc.SeparatorStub(self.channels["separator"]),
            transcriber=transcriber_pb2_grpc.TranscriberStub(self.channels["transcriber"]),
            video=video_pb2_grpc.VideoRendererStub(self.channels["video"]) if "video" in self.channels else None,
            metrics=self.metrics,
        )

    async def warm(self, metrics: ServiceMetrics) -> audio_pb2.ModelInfo | None:
        """Wait until every service reports SERVING (the gateway serves no model of its own)."""
        await self.wait_ready(self.ready_timeout)
        return None

    async def wait_ready(self, timeout: float) -> None:
        """Wait until every service reports SERVING (start-up; HTTP jobs after a restart)."""

        async def one(name: str, channel: grpc.aio.Channel) -> None:
            stub = health_pb2_grpc.HealthStub(channel)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"{name} did not become ready within {timeout:.0f} s")
                await asyncio.sleep(0.25)

        await asyncio.gather(*(one(n, c) for n, c in self.channels.items()))

    async def close(self) -> None:
        """Close the channels."""
        for channel in self.channels.values():
            await channel.close()

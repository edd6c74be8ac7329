"""The gateway's side of the chain: one channel per model service, and waiting for them.

`Downstream` is the gateway's warm model (tabagent.serving.WarmModel): the gateway is
SERVING once every service it calls is, and from then on follows them (`follow`):
NOT_SERVING while one has no SERVING replica (down, or warming up), SERVING again when
it is back. Load balancers and kubelet's readiness probe then keep songs away from a
gateway that could not run them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.chain import Stubs
from gateway.config import GatewayConfig
from tabagent import serving, telemetry
from tabagent.metrics import ServiceMetrics
from tabagent.serving.auth import bearer_interceptors
from tabagent.v1 import audio_pb2, separator_pb2_grpc, transcriber_pb2_grpc, video_pb2_grpc

log = logging.getLogger(__name__)

READY_TIMEOUT = 600.0       # how long to wait for the model services at start-up
READY_POLL_SECONDS = 0.05   # how often start-up checks them
FOLLOW_SECONDS = 1.0        # how often a SERVING gateway checks its services
CHECK_SECONDS = 2.0         # a service that does not answer a check in this long is down
DOWN_ROUNDS = 2             # rounds a service must fail before the gateway goes NOT_SERVING


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
                # A check is one small RPC; polling often keeps the gateway's SERVING (and
                # `tabagent up`'s) within 50 ms of its last service's.
                await asyncio.sleep(READY_POLL_SECONDS)

        await asyncio.gather(*(one(n, c) for n, c in self.channels.items()))

    async def service_ready(self, channel: grpc.aio.Channel, tries: int = 3) -> bool:
        """Whether a service has a SERVING replica. Checks go round-robin over the replicas,
        so a few tries find a serving one beside one that is warming up or gone."""
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(tries):
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=CHECK_SECONDS)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
        return False

    async def follow(self, set_serving: Callable[[bool], Awaitable[None]],
                     every: float = FOLLOW_SECONDS) -> None:
        """Keep the gateway's health in step with its services (runs until cancelled).

        Args:
            set_serving: the gateway's Health.set_serving.
            every: seconds between checks.
        """
        serving_now, failed = True, 0
        while True:
            await asyncio.sleep(every)
            with telemetry.untraced():
                states = await asyncio.gather(*(self.service_ready(c) for c in self.channels.values()))
            down = [name for name, ok in zip(self.channels, states, strict=True) if not ok]
            failed = failed + 1 if down else 0
            if serving_now and failed >= DOWN_ROUNDS:
                log.warning("NOT_SERVING: no serving replica of %s", ", ".join(down))
                serving_now = False
                await set_serving(False)
            elif not serving_now and not down:
                log.info("SERVING again: every model service answers")
                serving_now = True
                await set_serving(True)

    async def close(self) -> None:
        """Close the channels."""
        for channel in self.channels.values():
            await channel.close()

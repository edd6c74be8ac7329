"""The Gateway gRPC server: `Gateway.Process` streams a song through the chain.

One `ServiceMetrics("gateway")` per process (`Downstream.metrics`, also
`GatewayServicer.metrics`) records the gateway's RPCs, its queue of songs (the servicer's
StreamLimiter) and every song's stage timings; the HTTP app serves the same registry on
`/metrics` (`servicer.metrics.asgi_app()`), and GATEWAY_METRICS_PORT, when set, serves it
on a port of its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from opentelemetry import trace

from gateway import artifacts
from gateway.chain import Stubs
from gateway.config import GatewayConfig
from gateway.song_job import SongJob
from gateway.spec import spec_from_config
from tabagent import serving, telemetry
from tabagent.errors import BadConfig
from tabagent.metrics import ServiceMetrics
from tabagent.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    separator_pb2_grpc,
    transcriber_pb2_grpc,
    video_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAME = "tabagent.v1.Gateway"


def open_channel(address: str) -> grpc.aio.Channel:
    """A channel to a service; `dns:///name:port` balances over every replica."""
    return grpc.aio.insecure_channel(
        address, options=serving.channel_options(), interceptors=telemetry.client_interceptors()
    )


class Downstream:
    """Channels to the three services, opened once per gateway process.

    Args:
        config: where the services are (`*_addr`: `host:port`, `dns:///name:port` or
            `ipv4:a:p,b:q`; several addresses are balanced round-robin).
        metrics: where the chain records stage timings; None creates the gateway's.
    """

    def __init__(self, config: GatewayConfig, metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics("gateway")
        self.channels = {
            "separator": open_channel(config.separator_addr),
            "transcriber": open_channel(config.transcriber_addr),
        }
        if config.video_addr:
            self.channels["video"] = open_channel(config.video_addr)
        self.stubs = Stubs(
            separator=separator_pb2_grpc.SeparatorStub(self.channels["separator"]),
            transcriber=transcriber_pb2_grpc.TranscriberStub(self.channels["transcriber"]),
            video=video_pb2_grpc.VideoRendererStub(self.channels["video"]) if "video" in self.channels else None,
            metrics=self.metrics,
        )

    async def wait_ready(self, timeout: float) -> None:
        """Wait until every service reports SERVING (used at start-up and by `tabagent run`)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

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
        for channel in self.channels.values():
            await channel.close()


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """Receives a file, streams it through the chain, returns events and artifacts."""

    def __init__(self, config: GatewayConfig, downstream: Downstream, health: serving.Health) -> None:
        self.config = config
        self.downstream = downstream
        self.health = health
        self.metrics = downstream.metrics
        self.limiter = serving.StreamLimiter(config.max_streams, config.max_queue, "gateway")
        self.metrics.bind_limiter(self.limiter)
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)

    @serving.grpc_stream_errors("gateway")
    async def Process(
        self, request_iterator: AsyncIterator[gateway_pb2.ProcessRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.ProcessResponse]:
        serving.require_ready(self.health, "the gateway")
        async with self.limiter.slot():
            first = await serving.first_message(request_iterator, "Gateway.Process")
            if first.WhichOneof("payload") != "config":
                raise BadConfig("the first message must carry ProcessConfig, then the file's bytes")
            spec = spec_from_config(first.config, uuid.uuid4().hex)
            trace.get_current_span().set_attribute("song.id", spec.song_id)
            job = SongJob(self.config, self.downstream.stubs, spec,
                          Path(self.config.data_dir) / "grpc" / spec.song_id, context.time_remaining())
            upload = asyncio.create_task(self._receive(request_iterator, job))
            try:
                yield gateway_pb2.ProcessResponse(started=gateway_pb2.JobStarted(job_id=spec.song_id))
                async for event in job.events():
                    yield event
                for path in job.artifact_paths:
                    if path.name == "video.mp4":
                        continue  # already streamed live as `video` fragments
                    for piece in artifacts.pieces(path):
                        yield gateway_pb2.ProcessResponse(artifact=piece)
                yield gateway_pb2.ProcessResponse(summary=job.summary())
                self.metrics.add_audio(job.result.seconds)
                log.info("song %s done: %.1f s of audio in %.1f s", spec.song_id,
                         job.result.seconds, job.result.wall_seconds)
            finally:
                upload.cancel()
                job.close()

    @staticmethod
    async def _receive(request_iterator: AsyncIterator[gateway_pb2.ProcessRequest], job: SongJob) -> None:
        try:
            async for req in request_iterator:
                if req.WhichOneof("payload") != "data":
                    raise BadConfig("only file bytes may follow the config message")
                job.spool.write(req.data)
            job.spool.finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # too large, bad message, client gone
            job.spool.abort(exc)


def create_server(config: GatewayConfig, downstream: Downstream | None = None,
                  address: str | None = None) -> tuple[grpc.aio.Server, int, GatewayServicer]:
    """Build the gateway server (not started).

    Args:
        config: gateway settings.
        downstream: channels to the services (opened from `config` when None).
        address: bind address; defaults to config.host:config.port.

    Returns:
        (server, bound port, servicer).
    """
    downstream = downstream or Downstream(config)
    server, health = serving.new_server(
        [SERVICE_NAME], interceptors=[downstream.metrics.interceptor()], name="gateway")
    servicer = GatewayServicer(config, downstream, health)
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
    port = serving.bind(server, address or f"{config.host}:{config.port}")
    return server, port, servicer

"""The Gateway gRPC API: `Gateway.Process` streams a song through the chain.

One `ServiceMetrics("gateway")` per process (`Downstream.metrics`, also
`GatewayServicer.metrics`) records the gateway's RPCs, its queue of songs (the servicer's
StreamLimiter) and every song's stage timings; the HTTP API serves the same registry on
`/metrics`, and GATEWAY_METRICS_PORT, when set, serves it on a port of its own.
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
from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.keys import KeyRing
from gateway.song_job import SongJob
from gateway.spec import spec_from_config
from tabagent import serving
from tabagent.errors import BadConfig, NotReady
from tabagent.metrics import ServiceMetrics
from tabagent.serving import ServiceServer, ServiceSpec
from tabagent.serving.auth import Authenticator
from tabagent.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "tabagent.v1.Gateway"


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """Receives a file, streams it through the chain, returns events and artifacts."""

    def __init__(self, config: GatewayConfig, downstream: Downstream, health: serving.Health,
                 metrics: ServiceMetrics) -> None:
        self.config = config
        self.downstream = downstream
        self.health = health
        self.metrics = metrics
        self.limiter = serving.StreamLimiter(config.max_streams, config.max_queue, "gateway")
        self.metrics.bind_limiter(self.limiter)
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)

    @serving.grpc_stream_errors("gateway")
    async def Process(
        self, request_iterator: AsyncIterator[gateway_pb2.ProcessRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.ProcessResponse]:
        # The config is read before anything may refuse the song: a refusal racing the
        # client's first write reaches it as "Internal error from Core" (grpc/grpc#36066).
        first = await serving.first_message(request_iterator, "Gateway.Process")
        if first.WhichOneof("payload") != "config":
            raise BadConfig("the first message must carry ProcessConfig, then the file's bytes")
        spec = spec_from_config(first.config, uuid.uuid4().hex)
        trace.get_current_span().set_attribute("song.id", spec.song_id)
        async with self.limiter.slot():
            await self._wait_ready(context)
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

    async def _wait_ready(self, context: grpc.aio.ServicerContext) -> None:
        """Wait for the model services (down or warming) as HTTP jobs do: up to
        `config.ready_wait` seconds, never past the client's deadline."""
        if self.health.ready:
            return
        if self.health.draining:
            raise NotReady("the gateway is shutting down; retry (another gateway takes the song)")
        left = context.time_remaining()
        wait = self.config.ready_wait if left is None else min(self.config.ready_wait, max(0.0, left - 1.0))
        log.info("a song waits up to %.0f s for the model services", wait)
        if not await self.health.wait_ready(wait):
            raise NotReady(f"the model services are not ready (one is down or still loading its model) after "
                           f"{wait:.0f} s of waiting; retry later")

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


def _authenticator(config: GatewayConfig) -> Authenticator | None:
    """The gRPC API takes the HTTP API's keys: TABAGENT_API_KEY and the users' keys file
    (gateway/keys.py; none configured: open)."""
    keys = KeyRing.from_config(config)
    return (lambda token: keys.verify(token) is not None) if keys.enabled else None


SPEC = ServiceSpec(SERVICE_NAME, "gateway", GatewayServicer, gateway_pb2_grpc.add_GatewayServicer_to_server,
                   authenticator=_authenticator,
                   refusal="the gateway needs the API key: send 'authorization: Bearer <key>' metadata "
                           "(the SDK's api_key= or TABAGENT_API_KEY)")


def create_server(config: GatewayConfig, downstream: Downstream | None = None,
                  address: str | None = None,
                  metrics: ServiceMetrics | None = None) -> tuple[ServiceServer, int]:
    """Build the gateway server (NOT_SERVING until `await server.warm()`: every service
    SERVING; not started).

    Args:
        config: gateway settings.
        downstream: channels to the services (opened from `config` when None).
        address: bind address; defaults to config.host:config.port.
        metrics: the gateway's metrics; default the downstream's (one registry for the
            gateway's RPCs and its songs' stage timings).

    Returns:
        (server, bound port); `server.servicer` is the GatewayServicer.
    """
    downstream = downstream or Downstream(config)
    return serving.create_server(SPEC, config, downstream, address, metrics or downstream.metrics)

"""The tabagent.v1.VideoRenderer gRPC service: song audio and tab events in, fragmented MP4 out."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
from opentelemetry import trace

from tabagent import serving, telemetry
from tabagent.errors import BadConfig, Cancelled
from tabagent.metrics import ServiceMetrics
from tabagent.serving import (
    Health,
    ServiceServer,
    ServiceSpec,
    StreamLimiter,
    first_message,
    grpc_stream_errors,
    require_ready,
)
from tabagent.v1 import video_pb2, video_pb2_grpc
from video_svc.config import VideoConfig
from video_svc.holder import ModelHolder
from video_svc.session import RenderSession
from video_svc.spec import RenderSpec

log = logging.getLogger(__name__)
tracer = telemetry.tracer(__name__)

SERVICE_NAME = "tabagent.v1.VideoRenderer"


class _Inbox:
    """Requests read from the client, waiting for the next step; never blocks the reader
    (audio is compressed at once by the step, so what waits here stays small)."""

    def __init__(self) -> None:
        self.items: list[video_pb2.RenderRequest] = []
        self.ended = False
        self.error: BaseException | None = None
        self.event = asyncio.Event()

    async def fill(self, request_iterator: AsyncIterator[video_pb2.RenderRequest]) -> None:
        try:
            async for request in request_iterator:
                self.items.append(request)
                self.event.set()
            self.ended = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-stream
            self.error = exc
        finally:
            self.event.set()

    def take(self) -> tuple[list[video_pb2.RenderRequest], bool]:
        """Everything received so far, and whether the client has half-closed."""
        self.event.clear()
        items, self.items = self.items, []
        return items, self.ended


class VideoRendererServicer(video_pb2_grpc.VideoRendererServicer):
    """Implements Render; one instance per server."""

    def __init__(
        self, config: VideoConfig, backend: ModelHolder, health: Health, metrics: ServiceMetrics
    ) -> None:
        self.config = config
        self.backend = backend
        self.health = health
        self.metrics = metrics
        self.limiter = StreamLimiter(config.max_streams, config.max_queue, name="video renderer")
        metrics.bind_limiter(self.limiter)
        self.executor = ThreadPoolExecutor(config.max_streams, thread_name_prefix="render")

    @grpc_stream_errors("video renderer")
    async def Render(  # noqa: N802 - the gRPC method name
        self,
        request_iterator: AsyncIterator[video_pb2.RenderRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[video_pb2.RenderResponse]:
        """First message: RenderConfig; then audio, parts, notes and beats. See video.proto."""
        require_ready(self.health, "the video renderer")
        async with self.limiter.slot():
            async for response in self._stream(request_iterator):
                yield response

    async def _stream(
        self, request_iterator: AsyncIterator[video_pb2.RenderRequest]
    ) -> AsyncIterator[video_pb2.RenderResponse]:
        first = await first_message(request_iterator, "Render")
        if first.WhichOneof("payload") != "config":
            raise BadConfig("the first Render message must carry a RenderConfig")
        spec = RenderSpec.from_proto(first.config, self.config)
        span = trace.get_current_span()
        span.set_attribute("tabagent.song_id", spec.song_id)
        span.set_attribute("tabagent.video.size", f"{spec.width}x{spec.height}@{spec.fps}")
        # Steps run in worker threads: their spans get this stream's context explicitly.
        parent = telemetry.current_context()
        background = self.backend.info(spec.diffusion)
        session = RenderSession(spec, self.backend, self.config)
        inbox = _Inbox()
        reader = asyncio.create_task(inbox.fill(request_iterator))
        stop = threading.Event()
        pending: Future[list[video_pb2.RenderResponse]] | None = None
        try:
            yield session.info()
            while not session.done:
                messages, ended = inbox.take()
                if inbox.error is not None:
                    raise Cancelled(f"the client stream failed: {inbox.error}")
                before = session.next_frame
                started_ns = time.time_ns()
                pending = self.executor.submit(session.step, messages, ended, stop)
                responses = await asyncio.wrap_future(pending)
                pending = None
                if session.next_frame > before:  # one span per step that drew frames
                    tracer.start_span("render.step", context=parent, start_time=started_ns, attributes={
                        "song.id": spec.song_id, "batch.size": session.next_frame - before,
                        "audio.offset": session.song_time(before),
                        "audio.seconds": (session.next_frame - before) / spec.fps,
                        "model.name": background.name, "device": background.device,
                    }).end()
                for response in responses:
                    yield response
                if session.next_frame == before and not session.done and not session.backlog:
                    await inbox.event.wait()
            seconds = session.validator.seconds
            self.metrics.add_audio(seconds)
            self.metrics.observe_stage("render", session.compute_seconds, seconds)
            log.info(
                "rendered %r: %.1f s, %d frames, %.2f s compute (%.2fx real time), %d bytes",
                spec.song_id, seconds, session.next_frame, session.compute_seconds,
                session.compute_seconds / max(seconds, 1e-9), session.bytes_out,
            )
        finally:
            stop.set()
            reader.cancel()
            if pending is not None and not pending.done():
                # The step stops within a frame; close once it has returned.
                pending.add_done_callback(lambda _: session.close())
            else:
                session.close()
            await asyncio.gather(reader, return_exceptions=True)


SPEC = ServiceSpec(SERVICE_NAME, "video", VideoRendererServicer,
                   video_pb2_grpc.add_VideoRendererServicer_to_server)


def create_server(
    config: VideoConfig,
    model: ModelHolder,
    address: str | None = None,
    metrics: ServiceMetrics | None = None,
) -> tuple[ServiceServer, int]:
    """Build the video server (NOT_SERVING until `await server.warm()`; see tabagent.serving)."""
    return serving.create_server(SPEC, config, model, address, metrics)


async def serve(config: VideoConfig | None = None) -> None:
    """Run the video renderer until SIGTERM/SIGINT: start, warm, serve, drain."""
    config = config or VideoConfig.from_env()
    await serving.run_service(SPEC, config, ModelHolder(config))

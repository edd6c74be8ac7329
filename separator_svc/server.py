"""The tabagent.v1.Separator gRPC service: audio chunks in, stem chunks out, as a bidi stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from separator_svc.base import SeparatorModel, StemBlocks, StemStream
from separator_svc.config import SeparatorConfig
from separator_svc.holder import ModelHolder
from tabagent import serving, telemetry
from tabagent.audio import ChunkValidator, make_chunk
from tabagent.errors import BadConfig, InvalidInput
from tabagent.metrics import ServiceMetrics
from tabagent.serving import (
    END_OF_AUDIO,
    Health,
    ServiceServer,
    ServiceSpec,
    StreamLimiter,
    first_message,
    grpc_stream_errors,
    read_audio_ahead,
    require_ready,
)
from tabagent.v1 import audio_pb2, separator_pb2, separator_pb2_grpc

log = logging.getLogger(__name__)
tracer = telemetry.tracer(__name__)

SERVICE_NAME = "tabagent.v1.Separator"



class SeparatorServicer(separator_pb2_grpc.SeparatorServicer):
    """Implements Separate; one instance per server."""

    def __init__(
        self, config: SeparatorConfig, holder: ModelHolder, health: Health, metrics: ServiceMetrics
    ) -> None:
        self.config = config
        self.holder = holder
        self.health = health
        self.metrics = metrics
        self.limiter = StreamLimiter(config.max_streams, config.max_queue, name="separator")
        metrics.bind_limiter(self.limiter)
        self.executor = ThreadPoolExecutor(config.max_streams, thread_name_prefix="separate")

    @grpc_stream_errors("separator")
    async def Separate(  # noqa: N802 - the gRPC method name
        self,
        request_iterator: AsyncIterator[separator_pb2.SeparateRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[separator_pb2.SeparateResponse]:
        """First message: SeparateConfig; then AudioChunks. See separator.proto."""
        require_ready(self.health, "separator")
        async with self.limiter.slot():
            async for response in self._stream(request_iterator):
                yield response

    async def _stream(
        self, request_iterator: AsyncIterator[separator_pb2.SeparateRequest]
    ) -> AsyncIterator[separator_pb2.SeparateResponse]:
        first = await first_message(request_iterator, "Separate")
        if first.WhichOneof("payload") != "config":
            raise BadConfig("the first Separate message must carry a SeparateConfig, not audio")
        cfg = first.config
        model = self.holder.get(cfg.model)
        stems = model.stems_for(list(cfg.stems))
        overlap = self._overlap(cfg.overlap)
        span = trace.get_current_span()
        span.set_attributes({"song.id": cfg.song_id, "tabagent.song_id": cfg.song_id,
                             "tabagent.model": model.info.name, "model.name": model.info.name,
                             "device": model.info.device})
        log.info(
            "separating song %r with %s (fallback=%s), stems %s",
            cfg.song_id, model.info.name, model.info.fallback, ",".join(stems),
        )
        yield separator_pb2.SeparateResponse(
            info=separator_pb2.SeparatorInfo(
                model=model.info.to_proto(),
                sources=list(model.sources),
                stems=list(stems),
                segment_seconds=model.segment_seconds,
                sample_rate=model.sample_rate,
            )
        )
        async for response in self._separate(request_iterator, model, stems, overlap, cfg):
            yield response

    def _overlap(self, value: float) -> float:
        if value == 0:
            return self.config.default_overlap
        if not 0 < value <= 0.9:
            raise BadConfig(f"overlap {value} is outside (0, 0.9]")
        return float(value)

    async def _separate(
        self,
        request_iterator: AsyncIterator[separator_pb2.SeparateRequest],
        model: SeparatorModel,
        stems: tuple[str, ...],
        overlap: float,
        cfg: separator_pb2.SeparateConfig,
    ) -> AsyncIterator[separator_pb2.SeparateResponse]:
        validator = ChunkValidator(
            max_seconds=self.config.max_seconds, max_chunk_bytes=self.config.max_chunk_bytes
        )
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.read_ahead)
        reader = asyncio.create_task(read_audio_ahead(request_iterator, validator, queue, "Separate"))
        stream: StemStream | None = None
        pending: Future[StemBlocks] | None = None
        compute = 0.0
        offset = 0
        # Steps run in worker threads: their spans get this stream's context explicitly.
        parent = telemetry.current_context()
        step_attributes = {"song.id": cfg.song_id, "model.name": model.info.name,
                           "device": model.info.device}
        try:
            ended = False
            # A step takes what has arrived, up to about one model segment: more would only
            # hold back stem audio that is already final (the DSP separator's "segment" is
            # one STFT frame, so it steps chunk by chunk; Demucs by about a segment).
            step_seconds = max(getattr(model, "segment_seconds", 0.0), 1e-3)
            while not ended:
                first = await _next_item(queue, stream)
                items = [] if first is _COLLECT else [first]
                gathered = _seconds(first, validator.sample_rate)
                while not queue.empty() and len(items) < self.config.read_ahead and gathered < step_seconds:
                    items.append(queue.get_nowait())
                    gathered += _seconds(items[-1], validator.sample_rate)
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                ended = bool(items) and items[-1] is END_OF_AUDIO
                audio = [x for x in items if x is not END_OF_AUDIO]
                if stream is None:
                    if not audio:
                        raise InvalidInput("the Separate stream ended without any audio")
                    stream = model.open_stream(
                        stems, overlap, validator.sample_rate, validator.channels
                    )
                frames = np.concatenate(audio) if audio else None
                started = time.perf_counter()
                step = tracer.start_span("separate.step", context=parent, attributes={
                    **step_attributes,
                    "audio.offset": offset / stream.sample_rate,
                    "input.seconds": (frames.shape[0] / validator.sample_rate) if frames is not None else 0.0,
                    "final": ended,
                })
                segments = stream.segments
                with trace.use_span(step, end_on_exit=True):
                    pending = self.executor.submit(
                        _step, stream, frames, ended, trace.set_span_in_context(step, parent)
                    )
                    out = await asyncio.wrap_future(pending)
                    pending = None
                    step.set_attributes({"audio.seconds": _frames(out) / stream.sample_rate,
                                         "segments": stream.segments - segments})
                took = time.perf_counter() - started
                compute += took
                new_seconds = _frames(out) / stream.sample_rate
                self.metrics.observe_stage("separate", took, new_seconds or None)
                for response in self._stem_chunks(out, offset, stream.sample_rate):
                    yield response
                offset += _frames(out)
                if not _frames(out) and not ended:
                    continue
                total = cfg.expected_seconds if cfg.expected_seconds > 0 else 0.0
                if ended:
                    total = offset / stream.sample_rate
                yield separator_pb2.SeparateResponse(
                    progress=audio_pb2.Progress(
                        stage="separate",
                        done_seconds=offset / stream.sample_rate,
                        total_seconds=total,
                    )
                )
            assert stream is not None
            seconds = offset / stream.sample_rate
            self.metrics.add_audio(seconds)
            log.info(
                "separated song %r: %.1f s in %d segments, %.2f s compute",
                cfg.song_id, seconds, stream.segments, compute,
            )
            yield separator_pb2.SeparateResponse(
                summary=separator_pb2.SeparateSummary(
                    seconds=seconds, segments=stream.segments, compute_seconds=compute
                )
            )
        finally:
            reader.cancel()
            if stream is not None:
                stream.cancel()
            if pending is not None and not pending.done():
                # The step stops at its next segment boundary; wait so the stream's slot
                # is not reused while its compute still runs.
                waiter = asyncio.wrap_future(pending)
                await asyncio.wait([waiter])
                if not waiter.cancelled():
                    waiter.exception()  # retrieved: the stream is over, whatever it was
            await asyncio.gather(reader, return_exceptions=True)

    def _stem_chunks(
        self, out: StemBlocks, offset: int, rate: int
    ) -> list[separator_pb2.SeparateResponse]:
        """Cut new stem audio into chunks of about chunk_seconds, interleaved by stem."""
        n = _frames(out)
        step = max(1, int(round(self.config.chunk_seconds * rate)))
        responses = []
        for start in range(0, n, step):
            for stem, audio in out.items():
                chunk = make_chunk(audio[start : start + step], rate, offset + start)
                responses.append(
                    separator_pb2.SeparateResponse(
                        stem=separator_pb2.StemChunk(stem=stem, audio=chunk)
                    )
                )
        return responses


_COLLECT = object()  # no new audio: a pipelined stream finished a segment in the background


async def _next_item(queue: asyncio.Queue[Any], stream: StemStream | None) -> Any:
    """The next read-ahead item, or _COLLECT when the stream's oldest segment in flight
    finishes first (so its stems leave without waiting for more audio)."""
    oldest = stream.oldest() if stream is not None else None
    if oldest is None or not queue.empty():
        return await queue.get()
    getter = asyncio.ensure_future(queue.get())
    finished = asyncio.wrap_future(oldest)
    # Its error (if any) is raised by the step that collects it; mark this copy as seen.
    finished.add_done_callback(lambda f: f.cancelled() or f.exception())
    done, _ = await asyncio.wait({getter, finished}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()  # asyncio.Queue.get leaves the item in the queue when cancelled
    return _COLLECT


def _seconds(item: Any, rate: int) -> float:
    """Seconds of audio in a read-ahead item (0 for the end marker or an error)."""
    return item.shape[0] / rate if isinstance(item, np.ndarray) and rate else 0.0


def _frames(blocks: StemBlocks) -> int:
    return next(iter(blocks.values())).shape[0] if blocks else 0


def _step(
    stream: StemStream, frames: np.ndarray | None, ended: bool, context: otel_context.Context
) -> StemBlocks:
    """One compute step in a worker thread: push what arrived, finish at the end.

    `context` (the step's span) is made current in this thread for the step, so the
    model's segment spans become its children.
    """
    with telemetry.attached(context):
        out = stream.push(frames) if frames is not None else stream.collect()
        if ended:
            rest = stream.finish()
            out = {k: np.concatenate([out[k], rest[k]]) for k in out}
        return out


SPEC = ServiceSpec(SERVICE_NAME, "separator", SeparatorServicer,
                   separator_pb2_grpc.add_SeparatorServicer_to_server)


def create_server(
    config: SeparatorConfig,
    model: ModelHolder,
    address: str | None = None,
    metrics: ServiceMetrics | None = None,
) -> tuple[ServiceServer, int]:
    """Build the separator server (NOT_SERVING until `await server.warm()`; see tabagent.serving)."""
    return serving.create_server(SPEC, config, model, address, metrics)


async def serve(config: SeparatorConfig | None = None) -> None:
    """Run the separator until SIGTERM/SIGINT: start, warm the models, serve, drain."""
    config = config or SeparatorConfig.from_env()
    log.info("separator models: %s", ",".join(config.models))
    await serving.run_service(SPEC, config, ModelHolder.from_config(config))

"""The tabagent.v1.Transcriber gRPC service: a stem's audio in, final fingered notes out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from tabagent import serving, telemetry
from tabagent.audio import ChunkValidator, StreamResampler
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
from tabagent.v1 import audio_pb2, transcriber_pb2, transcriber_pb2_grpc
from transcriber_svc.basicpitch import AUDIO_N_SAMPLES, AUDIO_SAMPLE_RATE, HOP_SIZE, OVERLAP_LEN
from transcriber_svc.config import TranscriberConfig
from transcriber_svc.holder import ModelHolder
from transcriber_svc.model import BasicPitchModel, ModelOutput
from transcriber_svc.pipeline import NoteTracker, TrackedNotes
from transcriber_svc.request import StreamSettings, parse_config
from transcriber_svc.runner import WindowRunner

log = logging.getLogger(__name__)
tracer = telemetry.tracer(__name__)

SERVICE_NAME = "tabagent.v1.Transcriber"


class TranscriberServicer(transcriber_pb2_grpc.TranscriberServicer):
    """Implements Transcribe; one instance per server."""

    def __init__(
        self, config: TranscriberConfig, holder: ModelHolder, health: Health, metrics: ServiceMetrics
    ) -> None:
        self.config = config
        self.holder = holder
        self.health = health
        self.metrics = metrics
        self.limiter = StreamLimiter(config.max_streams, config.max_queue, name="transcriber")
        metrics.bind_limiter(self.limiter)
        self.executor = ThreadPoolExecutor(config.max_streams, thread_name_prefix="transcribe")

    @grpc_stream_errors("transcriber")
    async def Transcribe(  # noqa: N802 - the gRPC method name
        self,
        request_iterator: AsyncIterator[transcriber_pb2.TranscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[transcriber_pb2.TranscribeResponse]:
        """First message: TranscribeConfig; then AudioChunks. See transcriber.proto."""
        require_ready(self.health, "transcriber")
        async with self.limiter.slot():
            async for response in self._stream(request_iterator):
                yield response

    async def _stream(
        self, request_iterator: AsyncIterator[transcriber_pb2.TranscribeRequest]
    ) -> AsyncIterator[transcriber_pb2.TranscribeResponse]:
        first = await first_message(request_iterator, "Transcribe")
        if first.WhichOneof("payload") != "config":
            raise BadConfig("the first Transcribe message must carry a TranscribeConfig, not audio")
        settings = parse_config(first.config, self.config.max_buffer_seconds, self.config.early_seconds)
        model, runner = self.holder.get()
        span = trace.get_current_span()
        span.set_attributes({"song.id": settings.song_id, "tabagent.song_id": settings.song_id,
                             "tabagent.part": settings.part, "model.name": model.info.name,
                             "device": model.info.device})
        log.info(
            "transcribing %s of song %r (%s tuning %s)",
            settings.part, settings.song_id, settings.tuning.name, list(settings.tuning.strings),
        )
        yield transcriber_pb2.TranscribeResponse(
            info=transcriber_pb2.TranscriberInfo(
                model=model.info.to_proto(),
                part=settings.part,
                tuning=settings.tuning.to_proto(),
                min_pitch=float(settings.tuning.lowest),
                max_pitch=float(settings.tuning.highest),
            )
        )
        async for response in self._transcribe(request_iterator, settings, runner, model):
            yield response

    async def _transcribe(
        self,
        request_iterator: AsyncIterator[transcriber_pb2.TranscribeRequest],
        settings: StreamSettings,
        runner: WindowRunner,
        model: BasicPitchModel,
    ) -> AsyncIterator[transcriber_pb2.TranscribeResponse]:
        validator = ChunkValidator(max_seconds=self.config.max_seconds, max_chunk_bytes=self.config.max_chunk_bytes)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.read_ahead)
        reader = asyncio.create_task(read_audio_ahead(request_iterator, validator, queue, "Transcribe"))
        tracker = NoteTracker(settings.tuning, settings.instrument, settings.decoder, settings.post,
                              early=settings.early)
        step = _Step(tracker)
        pending: Future[Any] | None = None
        compute = 0.0
        sent_until = 0.0
        windows_done = 0
        # Stages run in worker threads and the batcher: their spans get this context explicitly.
        parent = telemetry.current_context()
        attributes = {"song.id": settings.song_id, "part": settings.part,
                      "model.name": model.info.name, "device": model.info.device}
        try:
            ended = False
            while not ended:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                ended = items[-1] is END_OF_AUDIO
                audio = [x for x in items if x is not END_OF_AUDIO]
                if audio and step.resampler is None:
                    step.resampler = StreamResampler(validator.sample_rate, AUDIO_SAMPLE_RATE, 1)
                if ended and step.resampler is None:
                    raise InvalidInput("the Transcribe stream ended without any audio")
                started = time.perf_counter()
                before = tracker.audio_seconds
                with self._stage("windows", parent, attributes, audio_offset=before) as span:
                    pending = self.executor.submit(step.windows, audio, ended)
                    windows = await asyncio.wrap_future(pending)
                    pending = None
                    span.set_attributes({"audio.seconds": tracker.audio_seconds - before,
                                         "windows": len(windows)})
                output = None
                if len(windows):
                    covered = len(windows) * HOP_SIZE / AUDIO_SAMPLE_RATE
                    offset = max(0, windows_done * HOP_SIZE - OVERLAP_LEN // 2) / AUDIO_SAMPLE_RATE
                    with self._stage("model", parent, attributes, audio_offset=offset,
                                     audio_seconds=covered, windows=len(windows)):
                        output = await runner.run(windows)
                    windows_done += len(windows)
                with self._stage("notes", parent, attributes, audio_offset=tracker.decoded_seconds):
                    pending = self.executor.submit(step.notes, output, ended)
                    tracked = await asyncio.wrap_future(pending)
                    pending = None
                took = time.perf_counter() - started
                compute += took
                self.metrics.observe_stage("transcribe", took, (tracker.audio_seconds - before) or None)
                if tracked.notes or tracked.out_of_range or tracked.final_until > sent_until:
                    sent_until = max(sent_until, tracked.final_until)
                    yield _note_batch(settings.part, tracked, sent_until)
                yield transcriber_pb2.TranscribeResponse(
                    progress=audio_pb2.Progress(
                        stage="transcribe",
                        part=settings.part,
                        done_seconds=tracker.decoded_seconds if not ended else tracker.audio_seconds,
                        total_seconds=tracker.audio_seconds if ended else 0.0,
                    )
                )
            self.metrics.add_audio(tracker.audio_seconds)
            log.info(
                "transcribed %s of song %r: %.1f s, %d notes, %d out of range, %.2f s compute (%d/%d cuts forced)",
                settings.part, settings.song_id, tracker.audio_seconds, tracker.notes_out,
                tracker.out_of_range_out, compute, tracker.decoder.forced_cuts,
                tracker.decoder.forced_cuts + tracker.decoder.natural_cuts,
            )
            yield transcriber_pb2.TranscribeResponse(
                summary=transcriber_pb2.TranscribeSummary(
                    part=settings.part,
                    notes=tracker.notes_out,
                    out_of_range=tracker.out_of_range_out,
                    seconds=tracker.audio_seconds,
                    compute_seconds=compute,
                )
            )
        finally:
            reader.cancel()
            if pending is not None and not pending.done():
                # A step in flight finishes within one batch of windows; wait so the slot
                # is not handed to a new stream while this one still computes.
                await asyncio.wait([asyncio.wrap_future(pending)])
            await asyncio.gather(reader, return_exceptions=True)

    @contextmanager
    def _stage(
        self,
        stage: str,
        parent: otel_context.Context,
        attributes: dict[str, Any],
        audio_offset: float,
        audio_seconds: float | None = None,
        windows: int | None = None,
    ) -> Iterator[trace.Span]:
        """One stage of a step: a `transcribe.<stage>` span (child of the stream's span,
        current for the block, so the batcher can find it) and a stage-latency sample."""
        extra: dict[str, Any] = {"audio.offset": audio_offset}
        if audio_seconds is not None:
            extra["audio.seconds"] = audio_seconds
        if windows is not None:
            extra["windows"] = windows  # the runner adds the batch size they ran in
        span = tracer.start_span(f"transcribe.{stage}", context=parent, attributes={**attributes, **extra})
        started = time.perf_counter()
        with trace.use_span(span, end_on_exit=True):
            yield span
        self.metrics.observe_stage(stage, time.perf_counter() - started, audio_seconds)


class _Step:
    """One stream's compute steps, run in worker threads one at a time."""

    def __init__(self, tracker: NoteTracker) -> None:
        self.tracker = tracker
        self.resampler: StreamResampler | None = None

    def windows(self, audio: list[np.ndarray], ended: bool) -> np.ndarray:
        tracker = self.tracker
        assert self.resampler is not None
        parts = [tracker.push_audio(self.resampler.process(block)[:, 0]) for block in audio]
        if ended:
            tail = self.resampler.process(np.zeros((0, self.resampler.out_channels), np.float32), last=True)
            parts.append(tracker.push_audio(tail[:, 0]))
            parts.append(tracker.finish_audio())
        return np.concatenate(parts) if parts else np.zeros((0, AUDIO_N_SAMPLES, 1), np.float32)

    def notes(self, output: ModelOutput | None, ended: bool) -> TrackedNotes:
        tracker = self.tracker
        tracked = tracker.add_outputs(output) if output is not None else TrackedNotes()
        if ended:
            tracked.extend(tracker.flush())
        return tracked


def _note_batch(part: str, tracked: TrackedNotes, final_until: float) -> transcriber_pb2.TranscribeResponse:
    return transcriber_pb2.TranscribeResponse(
        notes=audio_pb2.NoteBatch(
            part=part,
            notes=[n.to_proto() for n in tracked.notes],
            final_until=final_until,
            out_of_range=[n.to_proto() for n in tracked.out_of_range],
        )
    )


SPEC = ServiceSpec(SERVICE_NAME, "transcriber", TranscriberServicer,
                   transcriber_pb2_grpc.add_TranscriberServicer_to_server)


def create_server(
    config: TranscriberConfig,
    model: ModelHolder,
    address: str | None = None,
    metrics: ServiceMetrics | None = None,
) -> tuple[ServiceServer, int]:
    """Build the transcriber server (NOT_SERVING until `await server.warm()`; see tabagent.serving)."""
    return serving.create_server(SPEC, config, model, address, metrics)


async def serve(config: TranscriberConfig | None = None) -> None:
    """Run the transcriber until SIGTERM/SIGINT: start, warm the model, serve, drain."""
    config = config or TranscriberConfig.from_env()
    await serving.run_service(SPEC, config, ModelHolder.from_config(config))

"""One song through the chain: decode -> separator -> transcriber per part (+ video), streaming.

Every stage runs concurrently and talks through bounded queues, so the separator works on
segment k+1 while the transcribers turn segment k into notes and the renderer draws it;
a slow stage slows its producers (gRPC flow control) instead of growing memory.

Each song is a `song` span with one child span per stage (`decode`, `separate`,
`transcribe` per part, `beats`, `render`); each downstream call is started inside its
stage's span, so the services' spans hang under it in the same trace. The stages'
wall times also go to the gateway's `tabagent_stage_seconds` (and the real-time factor)
when the stubs carry metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from opentelemetry import trace

from gateway.crosspart import BleedFilter
from gateway.stereo import StereoField
from gateway.spec import PartResult, SongResult, SongSpec
from tabagent import audio as pcm
from tabagent import telemetry
from tabagent.errors import Cancelled, TabAgentError, UpstreamError, from_rpc_error
from tabagent.metrics import ServiceMetrics
from tabagent.notes import Note
from tabagent.rhythm import BeatTracker
from tabagent.v1 import (
    audio_pb2,
    gateway_pb2,
    separator_pb2,
    separator_pb2_grpc,
    transcriber_pb2,
    transcriber_pb2_grpc,
    video_pb2,
    video_pb2_grpc,
)

log = logging.getLogger(__name__)
tracer = telemetry.tracer(__name__)

SAMPLE_RATE = 44_100
QUEUE_CHUNKS = 16  # ~16 s of audio buffered between two stages at most
_END = object()


@dataclass
class Stubs:
    """The downstream services (one channel each, balanced over replicas).

    `metrics`, when set, receives every song's stage timings (the gateway's metrics).
    """

    separator: separator_pb2_grpc.SeparatorStub
    transcriber: transcriber_pb2_grpc.TranscriberStub
    video: video_pb2_grpc.VideoRendererStub | None = None
    metrics: ServiceMetrics | None = None


def stem_for_part(instrument: str, sources: list[str]) -> str:
    """The separator stem a part is transcribed from."""
    if instrument == "bass":
        return "bass"
    if instrument in sources:
        return instrument
    return "other"


def isolated_stem(instrument: str, model: audio_pb2.ModelInfo, sources: list[str]) -> bool:
    """Whether a part's stem holds its instrument alone: a real model's own source of that
    name (htdemucs_6s's "guitar"), not the DSP fallback's band split nor a 4-stem "other"."""
    return model.backend != "dsp" and not model.fallback and instrument in sources


def stems_to_request(instruments: list[str]) -> list[str]:
    """The stems a song's parts need, by names every separator model serves.

    "guitar" is a source of the 6-stem models and of the DSP separator and an alias of
    "other" for the 4-stem ones; asking only for these spares the separator the masks,
    overlap-adds and messages of the stems nobody reads.
    """
    wanted = ["bass" if i == "bass" else "guitar" if i == "guitar" else "other" for i in instruments]
    return list(dict.fromkeys(wanted))


async def _queue_iter(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while True:
        item = await queue.get()
        if item is _END:
            return
        yield item


class Chain:
    """Runs one song through the services and yields ProcessResponse events.

    After the iterator ends, `result` holds the SongResult (notes, rhythm, models,
    paths of the video and stems written under `workdir`).
    """

    def __init__(self, stubs: Stubs, spec: SongSpec, workdir: Path, timeout: float | None) -> None:
        self.stubs = stubs
        self.spec = spec
        self.workdir = workdir
        self.timeout = timeout
        self.result = SongResult(spec.song_id, spec)
        self._events: asyncio.Queue[Any] = asyncio.Queue(256)
        self._calls: list[Any] = []
        self._want_video = spec.video and stubs.video is not None
        instruments = {p.name: p.instrument for p in spec.parts}
        # The mix's stereo field, for telling the bass's echo from the guitar's own notes.
        kinds = set(instruments.values())
        self._stereo = StereoField() if "bass" in kinds and kinds - {"bass"} else None
        self._bleed = BleedFilter(instruments, stereo=self._stereo)
        # Set once the separator has taken the song (its info arrived): transcriber streams
        # start only then, so a song never holds transcriber slots while it waits for a
        # separator slot that songs waiting for transcriber slots hold (a deadlock across
        # songs when both services are at their limits).
        self._separating = asyncio.Event()
        self._isolated: dict[str, bool] = {}   # part -> its stem holds its instrument alone
        if spec.video and stubs.video is None:
            self.result.warnings.append("video was asked for but no video service is configured")

    # -- public --------------------------------------------------------------------
    async def run(self, audio: AsyncIterator[np.ndarray]) -> AsyncIterator[gateway_pb2.ProcessResponse]:
        """Process the song; yields progress, parts, note batches and video fragments."""
        started = time.monotonic()
        # Started here (a child of the caller's span) but never made current in this
        # generator, which the caller may close from another task: the stages' task
        # makes it current in its own context.
        song = tracer.start_span("song", attributes={
            "song.id": self.spec.song_id, "parts": [p.name for p in self.spec.parts],
            "video": self._want_video})
        main = asyncio.create_task(self._run_all(audio, song))
        error: BaseException | None = None
        try:
            while True:
                get = asyncio.create_task(self._events.get())
                done, _ = await asyncio.wait({get, main}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    yield get.result()
                    continue
                get.cancel()
                while not self._events.empty():
                    yield self._events.get_nowait()
                main.result()  # raises the chain's error, if any
                break
        except BaseException as exc:
            error = exc
            raise
        finally:
            if not main.done():
                main.cancel()
                for call in self._calls:
                    call.cancel()
                try:
                    await main
                except (asyncio.CancelledError, Exception):
                    pass
            self.result.wall_seconds = time.monotonic() - started
            song.set_attribute("audio.seconds", self.result.seconds)
            if error is not None:
                if not isinstance(error, GeneratorExit | asyncio.CancelledError):
                    song.record_exception(error)
                message = error.message if isinstance(error, TabAgentError) else type(error).__name__
                song.set_status(trace.Status(trace.StatusCode.ERROR, message))
            song.end()
        self._observe("song", self.result.wall_seconds)

    def _observe(self, stage: str, seconds: float) -> None:
        """Record one stage's wall time (and its real-time factor over the song's audio)."""
        if self.stubs.metrics is not None:
            self.stubs.metrics.observe_stage(stage, seconds, self.result.seconds or None)

    # -- orchestration --------------------------------------------------------------
    async def _emit(self, **kwargs: Any) -> None:
        await self._events.put(gateway_pb2.ProcessResponse(**kwargs))

    async def _run_all(self, audio: AsyncIterator[np.ndarray], song: trace.Span) -> None:
        # This task's context is its own: the song span is current for every stage task.
        with trace.use_span(song, end_on_exit=False, record_exception=False,
                            set_status_on_exception=False):
            await self._stages(audio)

    async def _stages(self, audio: AsyncIterator[np.ndarray]) -> None:
        spec = self.spec
        sep_in: asyncio.Queue[Any] = asyncio.Queue(QUEUE_CHUNKS)
        part_in: dict[str, asyncio.Queue[Any]] = {p.name: asyncio.Queue(QUEUE_CHUNKS) for p in spec.parts}
        video_in: asyncio.Queue[Any] = asyncio.Queue(QUEUE_CHUNKS * 4)
        for p in spec.parts:
            self.result.parts[p.name] = PartResult(p, p.tuning)
        tracker = BeatTracker(SAMPLE_RATE)
        tasks = [
            asyncio.create_task(self._feed(audio, sep_in, video_in, tracker), name="feed"),
            asyncio.create_task(self._separate(sep_in, part_in), name="separate"),
        ]
        part_tasks = [
            asyncio.create_task(self._transcribe(p.name, part_in[p.name], video_in), name=f"transcribe-{p.name}")
            for p in spec.parts
        ]
        tasks += part_tasks
        video_task = None
        if self._want_video:
            video_task = asyncio.create_task(self._render(video_in), name="video")
            tasks.append(video_task)
        core = [t for t in tasks if t is not video_task]
        watch = [video_task] if video_task is not None else []
        try:
            await self._wait(core, watch)
            with self._stage("beats"):
                self.result.rhythm = await asyncio.to_thread(tracker.result)
            if video_task is not None:
                await video_in.put(video_pb2.RenderRequest(beats=_beats_message(self.result.rhythm)))
                await video_in.put(_END)
                await self._wait(watch, [])
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            for call in self._calls:
                call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _wait(must: list[asyncio.Task[Any]], watch: list[asyncio.Task[Any]]) -> None:
        """Wait for every `must` task, failing fast if any task (watched ones too) fails."""
        pending = set(must) | set(watch)
        while pending & set(must):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t.cancelled():
                    raise Cancelled(f"stage {t.get_name()} was cancelled")
                exc = t.exception()
                if exc is not None:
                    raise exc

    def _call(self, rpc: Any, requests: AsyncIterator[Any], service: str) -> Any:
        """Start a downstream stream; call it inside the stage's span (its trace parent)."""
        call = rpc(requests, timeout=self.timeout, metadata=(("x-song-id", self.spec.song_id),))
        self._calls.append(call)
        return call

    @contextmanager
    def _stage(self, stage: str, **attributes: Any) -> Iterator[trace.Span]:
        """A stage of the song: a child span of `song` and a stage-latency sample."""
        started = time.monotonic()
        with tracer.start_as_current_span(stage, attributes={"song.id": self.spec.song_id, **attributes}) as span:
            try:
                yield span
            finally:
                span.set_attribute("audio.seconds", self.result.seconds)
        self._observe(stage, time.monotonic() - started)

    def _downstream_error(self, exc: grpc.RpcError, service: str, responses: int) -> TabAgentError:
        """The error a failed downstream stream becomes, saying plainly what happened."""
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        if code == grpc.StatusCode.UNAVAILABLE and responses:
            details = (exc.details() if hasattr(exc, "details") else "") or "connection lost"
            return UpstreamError(
                f"{service} became unavailable in the middle of song {self.spec.song_id}: the "
                f"replica serving it went away ({details}). The song was stopped; retry it", code)
        return from_rpc_error(exc, service)

    async def _feed(self, audio: AsyncIterator[np.ndarray], sep_in: asyncio.Queue[Any],
                    video_in: asyncio.Queue[Any], tracker: BeatTracker) -> None:
        offset = 0
        with self._stage("decode"):
            async for block in audio:
                chunk = pcm.make_chunk(block, SAMPLE_RATE, offset)
                await sep_in.put(chunk)
                if self._want_video:
                    await video_in.put(video_pb2.RenderRequest(audio=chunk))
                await asyncio.to_thread(tracker.push, block.mean(axis=1))
                if self._stereo is not None:
                    self._stereo.push(block)
                offset += block.shape[0]
                self.result.seconds = offset / SAMPLE_RATE
                await self._emit(progress=audio_pb2.Progress(stage="decode", done_seconds=self.result.seconds))
        await sep_in.put(_END)

    async def _separate(self, sep_in: asyncio.Queue[Any], part_in: dict[str, asyncio.Queue[Any]]) -> None:
        spec = self.spec

        # Every stem when the client wants them back, else only those the parts read.
        stems = [] if spec.return_stems else stems_to_request([p.instrument for p in spec.parts])

        async def requests() -> AsyncIterator[separator_pb2.SeparateRequest]:
            yield separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(
                model=spec.separator_model, song_id=spec.song_id, stems=stems))
            async for chunk in _queue_iter(sep_in):
                yield separator_pb2.SeparateRequest(audio=chunk)

        routes: dict[str, list[str]] = {}
        stem_writers: dict[str, Any] = {}
        with self._stage("separate"):
            call = self._call(self.stubs.separator.Separate, requests(), "separator")
            responses = 0
            try:
                async for resp in call:
                    responses += 1
                    kind = resp.WhichOneof("payload")
                    if kind == "stem":
                        stem = resp.stem
                        samples = pcm.read_chunk(stem.audio)
                        for part in routes.get(stem.stem, []):
                            mono = samples.mean(axis=1, keepdims=True, dtype=np.float32)
                            await part_in[part].put(pcm.make_chunk(mono, stem.audio.sample_rate, stem.audio.offset))
                        if stem.stem in stem_writers:
                            await asyncio.to_thread(stem_writers[stem.stem].write, samples)
                    elif kind == "info":
                        info = resp.info
                        self._separating.set()
                        self.result.models["separator"] = info.model
                        if info.model.fallback:
                            self.result.warnings.append(f"separator: {info.model.message}")
                        sources = list(info.stems) or list(info.sources)
                        for p in spec.parts:
                            routes.setdefault(stem_for_part(p.instrument, sources), []).append(p.name)
                            self._isolated[p.name] = isolated_stem(p.instrument, info.model, list(info.sources))
                        if spec.return_stems:
                            from gateway.artifacts import StemWriter

                            for s in sources:
                                path = self.workdir / f"stem-{s}.flac"
                                stem_writers[s] = StemWriter(path, info.sample_rate or SAMPLE_RATE)
                                self.result.stem_paths[s] = path
                    elif kind == "progress":
                        p = resp.progress
                        p.stage = "separate"
                        await self._emit(progress=p)
            except grpc.RpcError as exc:
                raise self._downstream_error(exc, "separator", responses) from None
            finally:
                for w in stem_writers.values():
                    await asyncio.to_thread(w.close)
        for q in part_in.values():
            await q.put(_END)

    async def _transcribe(self, part: str, chunks: asyncio.Queue[Any], video_in: asyncio.Queue[Any]) -> None:
        pr = self.result.parts[part]
        spec = pr.spec
        await self._separating.wait()
        config = transcriber_pb2.TranscribeConfig(
            instrument=spec.instrument, part=part, tuning=spec.tuning.to_proto(),
            onset_threshold=spec.onset_threshold, frame_threshold=spec.frame_threshold,
            song_id=self.spec.song_id, isolated_stem=self._isolated.get(part, False))

        async def requests() -> AsyncIterator[transcriber_pb2.TranscribeRequest]:
            yield transcriber_pb2.TranscribeRequest(config=config)
            async for chunk in _queue_iter(chunks):
                yield transcriber_pb2.TranscribeRequest(audio=chunk)

        with self._stage("transcribe", part=part):
            call = self._call(self.stubs.transcriber.Transcribe, requests(), "transcriber")
            responses = 0
            try:
                async for resp in call:
                    responses += 1
                    kind = resp.WhichOneof("payload")
                    if kind == "notes":
                        batch = resp.notes
                        batch.part = part
                        for ready in self._bleed.add(part, batch):
                            await self._release(ready, video_in)
                    elif kind == "info":
                        pr.model = resp.info.model
                        self.result.models[f"transcriber:{part}"] = resp.info.model
                        await self._emit(part=gateway_pb2.PartStarted(
                            part=part, tuning=resp.info.tuning, model=resp.info.model))
                        if self._want_video:
                            await video_in.put(video_pb2.RenderRequest(
                                part=video_pb2.PartInfo(part=part, tuning=resp.info.tuning)))
                    elif kind == "progress":
                        p = resp.progress
                        p.stage, p.part = "transcribe", part
                        await self._emit(progress=p)
            except grpc.RpcError as exc:
                raise self._downstream_error(exc, f"transcriber ({part})", responses) from None
        for ready in self._bleed.end(part):
            await self._release(ready, video_in)

    async def _release(self, batch: audio_pb2.NoteBatch, video_in: asyncio.Queue[Any]) -> None:
        """Record a final batch and send it to the client and the renderer."""
        pr = self.result.parts[batch.part]
        pr.notes.extend(_kept(n) for n in batch.notes)
        pr.out_of_range.extend(_kept(n) for n in batch.out_of_range)
        if batch.final_until == 0.0:
            batch.final_until = self.result.seconds
        await self._emit(notes=batch)
        if self._want_video:
            await video_in.put(video_pb2.RenderRequest(notes=batch))

    async def _render(self, video_in: asyncio.Queue[Any]) -> None:
        assert self.stubs.video is not None
        spec = self.spec
        render = video_pb2.RenderConfig()
        if spec.render is not None:
            render.CopyFrom(spec.render)
        render.parts[:] = list(render.parts) or [p.name for p in spec.parts]
        render.title = render.title or spec.title
        render.song_id = spec.song_id

        async def requests() -> AsyncIterator[video_pb2.RenderRequest]:
            yield video_pb2.RenderRequest(config=render)
            async for req in _queue_iter(video_in):
                yield req

        path = self.workdir / "video.mp4"
        with self._stage("render"), open(path, "wb") as out:
            call = self._call(self.stubs.video.Render, requests(), "video")
            responses = 0
            try:
                async for resp in call:
                    responses += 1
                    kind = resp.WhichOneof("payload")
                    if kind == "fragment":
                        await asyncio.to_thread(out.write, resp.fragment.data)
                        await self._emit(video=resp.fragment)
                    elif kind == "info":
                        self.result.models["video"] = resp.info.background
                        if resp.info.background.fallback and spec.render is not None and spec.render.diffusion:
                            self.result.warnings.append(f"video: {resp.info.background.message}")
                    elif kind == "progress":
                        p = resp.progress
                        p.stage = "render"
                        await self._emit(progress=p)
            except grpc.RpcError as exc:
                raise self._downstream_error(exc, "video", responses) from None
        self.result.video_path = path


def _kept(msg: audio_pb2.Note) -> Note:
    """A note as the song's result keeps it: its pitch-bend curve cut to its two extremes.

    The curve has one value per model frame (86 a second, 32 bytes each as Python floats:
    most of a long song's memory in the gateway); the artifacts read only its span (the
    size of a bend), and clients get the whole curve in the note events.
    """
    note = Note.from_proto(msg)
    if len(note.pitch_bend) > 2:
        note.pitch_bend = [min(note.pitch_bend), max(note.pitch_bend)]
    return note


def _beats_message(rhythm: Any) -> video_pb2.Beats:
    if rhythm is None:
        return video_pb2.Beats()
    return video_pb2.Beats(
        tempo=float(rhythm.tempo),
        times=[float(t) for t in rhythm.beats],
        beats_per_bar=int(rhythm.beats_per_bar),
        downbeats=[float(t) for t in rhythm.downbeats],
    )

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from opentelemetry import trace

from gateway.backing import SongAudio
from gateway.crosspart import BleedFilter
from gateway.failover import END as _END
from gateway.failover import Replay, backoff, retryable
from gateway.partsplit import PartSplit
from gateway.spec import PartResult, SongResult, SongSpec
from gateway.stereo import StereoField
from gateway.stereo_split import PARTS as SPLIT_PARTS
from gateway.stereo_split import StereoSplit
from gateway.videobeats import EarlyBars, Gate, VideoBeats
from tabagent import audio as pcm
from tabagent import telemetry
from tabagent.errors import (
    Cancelled,
    DeadlineExceeded,
    TabAgentError,
    UpstreamError,
    from_rpc_error,
    rpc_status,
)
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
EXPECTED_MAX = 3600.0  # a longer declared length is not passed on (the renderer's default limit)


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


class Chain:
    """Runs one song through the services and yields ProcessResponse events.

    After the iterator ends, `result` holds the SongResult (notes, rhythm, models,
    paths of the video and stems written under `workdir`).

    A stage whose stream dies with its replica (UNAVAILABLE) is started again on another
    one, up to `retries` times, from the start of the song (gateway.failover): what it
    had already passed on is dropped, so the song's result is the same. No downstream
    stream opens before the upload has decoded its first block (a file the decoder
    refuses never costs a model anything).
    """

    def __init__(self, stubs: Stubs, spec: SongSpec, workdir: Path, timeout: float | None,
                 retries: int = 2) -> None:
        self.stubs = stubs
        self.spec = spec
        self.workdir = workdir
        self.timeout = timeout
        self.retries = max(0, retries)
        self.result = SongResult(spec.song_id, spec)
        self._events: asyncio.Queue[Any] = asyncio.Queue(256)
        self._calls: list[Any] = []
        self._replays: list[Replay[Any]] = []
        self._progress: dict[tuple[str, str], float] = {}
        self._deadline = time.monotonic() + timeout if timeout else None
        # Set once the decoder has produced audio: the file is readable, within limits.
        self._audio = asyncio.Event()
        self._want_video = spec.video and stubs.video is not None
        instruments = {p.name: p.instrument for p in spec.parts}
        # The mix's stereo field, for telling the bass's echo from the guitar's own notes.
        kinds = set(instruments.values())
        self._stereo = StereoField() if "bass" in kinds and kinds - {"bass"} else None
        self._bleed = BleedFilter(instruments, stereo=self._stereo)
        # --parts lead,rhythm: the guitar stem split by stereo position, each note then
        # kept in one of the two parts (gateway.stereo_split, gateway.partsplit).
        names = {p.name for p in spec.parts}
        self._split = PartSplit() if set(SPLIT_PARTS) <= names else None
        # original.flac and the backing tracks (no-<part>.flac), written as the song streams.
        self._song_audio = SongAudio(workdir, SAMPLE_RATE, lambda name: not spec.artifacts or name in spec.artifacts)
        self.tracker: BeatTracker | None = None   # the song's beats so far (a running job's draft tab)
        self.expected_seconds: Callable[[], float] = lambda: 0.0   # the song's length when its file says
        self._video_beats: VideoBeats | None = None  # beats streamed to the renderer as they settle
        self._bars = EarlyBars()                       # where bars start: chosen once, for video and tabs
        self._gate = Gate([p.name for p in spec.parts])
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
        tracker = self.tracker = BeatTracker(SAMPLE_RATE)
        if self._want_video:
            self._video_beats = VideoBeats(tracker, self._bars)
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
            for ready in self._split.flush() if self._split is not None else []:
                await self._publish(ready, video_in)
            with self._stage("beats"):
                self.result.rhythm = self._bars.apply(await asyncio.to_thread(tracker.result))
            await self._finish_audio()
            if video_task is not None:
                assert self._video_beats is not None
                rest = self._video_beats.finish(self.result.rhythm)
                if rest is not None:
                    await video_in.put(video_pb2.RenderRequest(beats=rest))
                for batch in self._gate.advance(self._video_beats.final_until):
                    await video_in.put(video_pb2.RenderRequest(notes=batch))
                await video_in.put(_END)
                await self._wait(watch, [])
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            for call in self._calls:
                call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for replay in self._replays:
                replay.close()
            self._song_audio.abort()

    async def _finish_audio(self) -> None:
        """Close original.flac and the backing tracks; record them in the result."""
        paths, tracks, missing = await self._song_audio.close()
        self.result.audio_paths = paths
        self.result.backing_tracks = tracks
        if missing:
            self.result.warnings.append(f"backing tracks: none written ({missing})")
        elif any(t["fallback"] for t in tracks.values()):
            self.result.warnings.append(
                "backing tracks: made from the DSP fallback separator's stems (no Demucs weights), so "
                "each still holds some of the part it leaves out")

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

    def _replay(self, name: str, first: Any, queue: asyncio.Queue[Any], wrap: Any, parse: Any) -> Replay[Any]:
        """The request source of one stage, with a tape when restarts are allowed."""
        tape = self.workdir / ".tapes" / f"{name}.tape" if self.retries else None
        replay: Replay[Any] = Replay(first, queue, wrap, parse, tape)
        self._replays.append(replay)
        return replay

    def _remaining(self) -> float | None:
        """Seconds left of the song's deadline for the next downstream call."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"song {self.spec.song_id}: the deadline passed")
        return left

    async def _stream(self, rpc: Any, replay: Replay[Any], service: str,
                      handle: Callable[[str, Any, int], Awaitable[None]], **progress: str) -> None:
        """Run one stage's downstream stream to its end, restarting it if its replica dies.

        Each attempt is started inside the stage's span (its trace parent) and sends the
        whole input again (`replay`); `handle(kind, message, restarts)` gets every
        response but progress, which goes on to the client stamped with `progress`
        (stage, part) and never goes backwards. A failure that cannot be retried, or
        the last one allowed, raises the TabAgentError that says what happened.
        """
        restarts = 0
        key = (progress.get("stage", ""), progress.get("part", ""))
        while True:
            call = rpc(replay.requests(), timeout=self._remaining(),
                       metadata=(("x-song-id", self.spec.song_id),))
            self._calls.append(call)
            responses = 0
            try:
                async for resp in call:
                    responses += 1
                    kind = resp.WhichOneof("payload")
                    message = getattr(resp, kind)
                    if kind == "progress":
                        if message.done_seconds < self._progress.get(key, 0.0) and not message.total_seconds:
                            continue  # a restarted stream catching up
                        self._progress[key] = message.done_seconds
                        for field, value in progress.items():
                            setattr(message, field, value)
                        await self._emit(progress=message)
                    else:
                        await handle(kind, message, restarts)
                if restarts:
                    self.result.warnings.append(
                        f"{service}: the replica serving this song went away; the stage was started again "
                        f"on another replica ({restarts} time(s)) and finished")
                return
            except grpc.RpcError as exc:
                if restarts >= self.retries or not replay.replayable or not retryable(exc, responses):
                    raise self._downstream_error(exc, service, responses, restarts) from None
                restarts += 1
                code, details = rpc_status(exc)
                log.warning("song %s: the %s stream failed (%s: %s) after %d responses; starting it "
                            "again on another replica (restart %d of %d)", self.spec.song_id, service,
                            code.name, details, responses, restarts, self.retries)
                trace.get_current_span().add_event("restart", {"service": service, "code": code.name,
                                                               "restart": restarts})
                self.result.restarts[service] = restarts
                await asyncio.sleep(backoff(restarts))
            finally:
                call.cancel()

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

    def _downstream_error(self, exc: grpc.RpcError, service: str, responses: int,
                          restarts: int = 0) -> TabAgentError:
        """The error a failed downstream stream becomes, saying plainly what happened."""
        code, details = rpc_status(exc)
        tried = f" (after {restarts} restart(s) on other replicas)" if restarts else ""
        if code == grpc.StatusCode.UNAVAILABLE and responses:
            return UpstreamError(
                f"{service} became unavailable in the middle of song {self.spec.song_id}{tried}: the "
                f"replica serving it went away ({details or 'connection lost'}). The song was stopped; "
                "retry it", code)
        error = from_rpc_error(exc, service)
        if tried:
            error.message += tried
        return error

    async def _feed(self, audio: AsyncIterator[np.ndarray], sep_in: asyncio.Queue[Any],
                    video_in: asyncio.Queue[Any], tracker: BeatTracker) -> None:
        offset = 0
        with self._stage("decode"):
            async for block in audio:
                self._audio.set()
                chunk = pcm.make_chunk(block, SAMPLE_RATE, offset)
                await sep_in.put(chunk)
                await self._song_audio.mix(block, offset)
                if self._want_video:
                    await video_in.put(video_pb2.RenderRequest(audio=chunk))
                await asyncio.to_thread(tracker.push, block.mean(axis=1))
                if self._stereo is not None:
                    self._stereo.push(block)
                offset += block.shape[0]
                self.result.seconds = offset / SAMPLE_RATE
                if self._video_beats is not None:
                    await self._send_beats(video_in)
                elif self._bars.downbeat is None:
                    await asyncio.to_thread(self._bars.update, tracker, self.result.seconds)
                await self._emit(progress=audio_pb2.Progress(stage="decode", done_seconds=self.result.seconds))
        self._audio.set()
        await sep_in.put(_END)

    async def _send_beats(self, video_in: asyncio.Queue[Any]) -> None:
        """Beats that settled since the last time, to the renderer, and the notes they let it draw."""
        assert self._video_beats is not None
        beats = await asyncio.to_thread(self._video_beats.update, self.result.seconds)
        if beats is None:
            return
        await video_in.put(video_pb2.RenderRequest(beats=beats))
        for batch in self._gate.advance(self._video_beats.final_until):
            await video_in.put(video_pb2.RenderRequest(notes=batch))

    async def _separate(self, sep_in: asyncio.Queue[Any], part_in: dict[str, asyncio.Queue[Any]]) -> None:
        spec = self.spec

        # Every stem when the client wants them back, else only those the parts read.
        stems = [] if spec.return_stems else stems_to_request([p.instrument for p in spec.parts])

        first = separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(
            model=spec.separator_model, song_id=spec.song_id, stems=stems))
        replay = self._replay("separate", first, sep_in, lambda c: separator_pb2.SeparateRequest(audio=c),
                              separator_pb2.SeparateRequest.FromString)
        routes: dict[str, list[str]] = {}
        stem_writers: dict[str, Any] = {}
        forwarded: dict[str, int] = {}   # per stem: frames passed on (a restart resumes after them)
        halves: dict[str, StereoSplit] = {}       # stem -> its lead/rhythm splitter
        split_at: dict[str, int] = {}            # part -> frames of split audio sent

        async def handle(kind: str, message: Any, restarts: int) -> None:
            if kind == "stem":
                samples = pcm.read_chunk(message.audio)
                start, done = int(message.audio.offset), forwarded.get(message.stem, 0)
                if start + samples.shape[0] <= done:
                    return  # sent before the restart
                if start < done:
                    samples, start = samples[done - start:], done
                forwarded[message.stem] = start + samples.shape[0]
                rate = message.audio.sample_rate
                split = await asyncio.to_thread(halves[message.stem].push, samples) if message.stem in halves else {}
                for part in routes.get(message.stem, []):
                    if part in split:
                        await self._put_split(part_in[part], split[part], rate, split_at, part)
                        continue
                    mono = samples.mean(axis=1, keepdims=True, dtype=np.float32)
                    await part_in[part].put(pcm.make_chunk(mono, message.audio.sample_rate, start))
                if message.stem in stem_writers:
                    await asyncio.to_thread(stem_writers[message.stem].write, samples)
                await self._song_audio.stem(message.stem, samples, start)
            elif kind == "info":
                before = self.result.models.get("separator")
                if before is not None:
                    if (before.name, before.fallback) != (message.model.name, message.model.fallback):
                        raise UpstreamError(
                            f"the separator replica that took over song {spec.song_id} serves "
                            f"{message.model.name!r}, not {before.name!r}; the song was stopped, retry it",
                            grpc.StatusCode.UNAVAILABLE)
                    return
                self._separating.set()
                self.result.models["separator"] = message.model
                if message.model.fallback:
                    self.result.warnings.append(f"separator: {message.model.message}")
                sources = list(message.stems) or list(message.sources)
                for p in spec.parts:
                    routes.setdefault(stem_for_part(p.instrument, sources), []).append(p.name)
                    self._isolated[p.name] = isolated_stem(p.instrument, message.model, list(message.sources))
                    if p.name in SPLIT_PARTS:
                        stem = stem_for_part(p.instrument, sources)
                        halves.setdefault(stem, StereoSplit(message.sample_rate or SAMPLE_RATE))
                self._song_audio.parts(routes, message.model, message.sample_rate)
                if spec.return_stems:
                    from gateway.artifacts import StemWriter

                    for src in sources:
                        path = self.workdir / f"stem-{src}.flac"
                        stem_writers[src] = StemWriter(path, message.sample_rate or SAMPLE_RATE)
                        self.result.stem_paths[src] = path

        await self._audio.wait()
        with self._stage("separate"):
            try:
                await self._stream(self.stubs.separator.Separate, replay, "separator", handle, stage="separate")
            finally:
                for w in stem_writers.values():
                    await asyncio.to_thread(w.close)
            for stem, splitter in halves.items():
                rest = splitter.finish()
                for part in routes.get(stem, []):
                    if part in rest:
                        await self._put_split(part_in[part], rest[part], splitter.sample_rate, split_at, part)
                if splitter.mono:
                    log.info("song %s: the guitar stem has no stereo image; lead and rhythm are told "
                             "apart by chords and register alone", self.spec.song_id)
        for q in part_in.values():
            await q.put(_END)

    @staticmethod
    async def _put_split(queue: asyncio.Queue[Any], mono: np.ndarray, rate: int, sent: dict[str, int],
                         part: str) -> None:
        """Queue one part's share of the split stem (offsets count that part's own frames)."""
        if mono.size:
            await queue.put(pcm.make_chunk(mono[:, None], rate, sent.get(part, 0)))
            sent[part] = sent.get(part, 0) + mono.size

    async def _transcribe(self, part: str, chunks: asyncio.Queue[Any], video_in: asyncio.Queue[Any]) -> None:
        pr = self.result.parts[part]
        spec = pr.spec
        await self._separating.wait()
        config = transcriber_pb2.TranscribeConfig(
            instrument=spec.instrument, part=part, tuning=spec.tuning.to_proto(),
            onset_threshold=spec.onset_threshold, frame_threshold=spec.frame_threshold,
            song_id=self.spec.song_id, isolated_stem=self._isolated.get(part, False))

        replay = self._replay(f"transcribe-{part}", transcriber_pb2.TranscribeRequest(config=config), chunks,
                              lambda c: transcriber_pb2.TranscribeRequest(audio=c),
                              transcriber_pb2.TranscribeRequest.FromString)
        final_until = 0.0   # every note starting before this has been received

        async def handle(kind: str, message: Any, restarts: int) -> None:
            nonlocal final_until
            if kind == "notes":
                if restarts:  # drop what the stream sent before its restart
                    notes = [n for n in message.notes if n.start >= final_until]
                    out = [n for n in message.out_of_range if n.start >= final_until]
                    if not notes and not out and message.final_until <= final_until:
                        return
                    del message.notes[:], message.out_of_range[:]
                    message.notes.extend(notes)
                    message.out_of_range.extend(out)
                final_until = max(final_until, message.final_until)
                message.part = part
                for ready in self._bleed.add(part, message):
                    await self._release(ready, video_in)
            elif kind == "info":
                if pr.model is not None:
                    if pr.model.name != message.model.name:
                        raise UpstreamError(
                            f"the transcriber replica that took over part {part!r} serves {message.model.name!r}, "
                            f"not {pr.model.name!r}; the song was stopped, retry it", grpc.StatusCode.UNAVAILABLE)
                    return
                pr.model = message.model
                self.result.models[f"transcriber:{part}"] = message.model
                await self._emit(part=gateway_pb2.PartStarted(
                    part=part, tuning=message.tuning, model=message.model))
                if self._want_video:
                    await video_in.put(video_pb2.RenderRequest(
                        part=video_pb2.PartInfo(part=part, tuning=message.tuning)))

        with self._stage("transcribe", part=part):
            await self._stream(self.stubs.transcriber.Transcribe, replay, f"transcriber ({part})", handle,
                               stage="transcribe", part=part)
        for ready in self._bleed.end(part):
            await self._release(ready, video_in)

    async def _release(self, batch: audio_pb2.NoteBatch, video_in: asyncio.Queue[Any]) -> None:
        """Record a final batch and send it to the client and the renderer (a lead or
        rhythm batch first goes through the lead/rhythm split)."""
        if self._split is not None and batch.part in self._split.parts:
            for ready in self._split.add(batch):
                await self._publish(ready, video_in)
            return
        await self._publish(batch, video_in)

    async def _publish(self, batch: audio_pb2.NoteBatch, video_in: asyncio.Queue[Any]) -> None:
        pr = self.result.parts[batch.part]
        pr.notes.extend(_kept(n) for n in batch.notes)
        pr.out_of_range.extend(_kept(n) for n in batch.out_of_range)
        if batch.final_until == 0.0:
            batch.final_until = self.result.seconds
        await self._emit(notes=batch)
        if self._want_video and self._video_beats is not None:
            # The renderer draws only as far as the beats reach (bar numbers, chords).
            await video_in.put(video_pb2.RenderRequest(notes=self._gate.notes(batch, self._video_beats.final_until)))

    async def _render(self, video_in: asyncio.Queue[Any]) -> None:
        assert self.stubs.video is not None
        spec = self.spec
        render = video_pb2.RenderConfig()
        if spec.render is not None:
            render.CopyFrom(spec.render)
        render.parts[:] = list(render.parts) or [p.name for p in spec.parts]
        render.title = render.title or spec.title
        render.song_id = spec.song_id

        replay = self._replay("render", video_pb2.RenderRequest(config=render), video_in, lambda r: r,
                              video_pb2.RenderRequest.FromString)
        sent: list[tuple[float, float, bool]] = []   # fragments passed on
        seen: dict[int, int] = {}                     # fragments received, per attempt

        # The config goes once the first audio is decoded: the file's declared length is
        # known then (the video's progress line).
        await self._audio.wait()
        declared = self.expected_seconds()
        if not render.expected_seconds and 0 < declared <= EXPECTED_MAX:
            replay.first.config.expected_seconds = declared
        path = self.workdir / "video.mp4"
        with self._stage("render"), open(path, "wb") as out:

            async def handle(kind: str, message: Any, restarts: int) -> None:
                if kind == "fragment":
                    index = seen[restarts] = seen.get(restarts, -1) + 1
                    if index < len(sent):  # sent before the restart: the same bytes again
                        start, end, init = sent[index]
                        if init != message.init or abs(start - message.start) > 1e-3 or abs(end - message.end) > 1e-3:
                            raise UpstreamError(
                                f"the video of song {spec.song_id} could not be resumed on another renderer "
                                f"replica (fragment {index} differs); the song was stopped, retry it",
                                grpc.StatusCode.UNAVAILABLE)
                        return
                    sent.append((message.start, message.end, message.init))
                    await asyncio.to_thread(out.write, message.data)
                    await self._emit(video=message)
                elif kind == "info" and "video" not in self.result.models:
                    self.result.models["video"] = message.background
                    if message.background.fallback and spec.render is not None and spec.render.diffusion:
                        self.result.warnings.append(f"video: {message.background.message}")

            await self._stream(self.stubs.video.Render, replay, "video", handle, stage="render")
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

"""One Render stream: takes its messages, draws the frames that are ready, encodes them as it goes.

A frame at song time t is drawn once the audio has reached its end and every shown
part's notes are final (NoteBatch.final_until) as far ahead as the staff shows; when the
client half-closes, everything left is drawn. Methods run in a worker thread, one call
at a time; drawing the next frame overlaps encoding the current one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from tabagent.audio import ChunkValidator, iter_chunks
from tabagent.errors import BadConfig, InvalidInput
from tabagent.v1 import audio_pb2, video_pb2
from video_svc.background import Background
from video_svc.canvas import Canvas
from video_svc.config import VideoConfig
from video_svc.encoder import Mp4Encoder
from video_svc.features import AudioAnalyzer
from video_svc.layout import AHEAD_SECONDS, PAST_SECONDS, Layout
from video_svc.motion import CueTracker
from video_svc.mp4 import Fragment
from video_svc.painter import FramePainter
from video_svc.spec import RenderSpec
from video_svc.styles import Style
from video_svc.timeline import NoteTimeline

log = logging.getLogger(__name__)

STEP_SECONDS = 0.5        # longest a step draws before handing its fragments back
FEED_SLICE = 0.05         # ingesting a burst of messages yields to drawing after this long


class Backgrounds(Protocol):
    """Where a stream's background comes from (video_svc.holder.ModelHolder)."""

    def info(self, requested: bool) -> audio_pb2.ModelInfo:
        """The VideoInfo.background of a stream that asked (or not) for diffusion."""
        ...

    def background(self, requested: bool, style: Style, width: int, height: int, seed: int) -> Background:
        """A new background for one stream."""
        ...


class RenderSession:
    """The state of one stream.

    Args:
        spec: the validated RenderConfig.
        backend: gives the background (procedural or diffusion).
        config: encoder settings and limits.
    """

    def __init__(self, spec: RenderSpec, backend: Backgrounds, config: VideoConfig) -> None:
        self.spec = spec
        self.backend = backend
        self.config = config
        self.timeline = NoteTimeline(spec.parts)
        self.validator = ChunkValidator(max_seconds=config.max_seconds)
        self.analyzer: AudioAnalyzer | None = None
        self.encoder: Mp4Encoder | None = None
        self.layout: Layout | None = None
        self.painter: FramePainter | None = None
        self.cues = CueTracker(spec.style.motion, spec.fps)
        self.next_frame = 0
        self.total_frames: int | None = None
        self.ended = False
        self.done = False
        self.compute_seconds = 0.0
        self.bytes_out = 0
        self._backlog: deque[video_pb2.RenderRequest] = deque()
        self._ending = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="paint") if config.paint_threads else None
        self._ahead: tuple[int, Future[Canvas]] | None = None

    # -- input ---------------------------------------------------------------------------

    def info(self) -> video_pb2.RenderResponse:
        """The stream's first response."""
        return video_pb2.RenderResponse(
            info=video_pb2.VideoInfo(
                background=self.backend.info(self.spec.diffusion),
                width=self.spec.width,
                height=self.spec.height,
                fps=self.spec.fps,
                codec="h264",
                audio_codec="aac",
            )
        )

    def feed(self, request: video_pb2.RenderRequest) -> None:
        """Take one message of the stream (after the config)."""
        kind = request.WhichOneof("payload")
        if kind == "audio":
            self._audio(request.audio)
        elif kind == "notes":
            self.timeline.add_batch(request.notes)
        elif kind == "part":
            self.timeline.set_part(request.part)
        elif kind == "beats":
            self.timeline.add_beats(request.beats)
        elif kind == "config":
            raise BadConfig("RenderConfig must be the first message of the stream, and only the first")
        else:
            raise InvalidInput("empty RenderRequest: set audio, notes, part or beats")

    def _audio(self, chunk: audio_pb2.AudioChunk) -> None:
        samples = self.validator.check(chunk)
        if self.encoder is None:
            self.analyzer = AudioAnalyzer(self.validator.sample_rate)
            c = self.config
            self.encoder = Mp4Encoder(
                self.spec.width, self.spec.height, self.spec.fps,
                self.validator.sample_rate, self.validator.channels,
                preset=c.x264_preset, crf=c.crf, threads=c.encoder_threads, audio_bitrate=c.audio_bitrate,
            )
        assert self.analyzer is not None
        self.analyzer.push(samples)
        self.encoder.add_audio(samples)

    def end_input(self) -> None:
        """The client half-closed: everything is final now."""
        if self.ended:
            return
        self.ended = True
        if self.encoder is None or self.analyzer is None or self.validator.next_offset == 0:
            raise InvalidInput("the stream ended without audio: send the song as AudioChunks")
        self.analyzer.finish()
        media = self.encoder.delay + self.validator.seconds
        self.total_frames = max(1, math.ceil(media * self.spec.fps - 1e-6))

    # -- frames --------------------------------------------------------------------------

    def song_time(self, index: int) -> float:
        """Song time drawn in frame `index` (media time minus the audio priming)."""
        delay = self.encoder.delay if self.encoder is not None else 0.0
        return index / self.spec.fps - delay

    def _ready(self, index: int) -> bool:
        if self.total_frames is not None:
            return index < self.total_frames
        if self.analyzer is None:
            return False
        t = self.song_time(index)
        if self.analyzer.covered_until < t + 1.0 / self.spec.fps:
            return False
        return self.timeline.known_until() >= t + AHEAD_SECONDS

    def _start(self) -> None:
        shown = self.timeline.freeze()
        s = self.spec
        self.layout = Layout(s.width, s.height, s.fps, shown, s.title, self.timeline)
        background = self.backend.background(s.diffusion, s.style, s.width, s.height, s.seed)
        self.painter = FramePainter(
            self.layout, s.style, background, s.expected_seconds, reference=self.config.paint_reference
        )
        log.info(
            "render %s: %dx%d@%d %s, parts %s",
            s.song_id or "-", s.width, s.height, s.fps, s.style.name, [n for n, _ in shown] or "none",
        )

    def _paint(self, index: int) -> Canvas:
        assert self.analyzer is not None and self.painter is not None
        t = self.song_time(index)
        feats = self.analyzer.frame(t, t + 1.0 / self.spec.fps)
        cue = self.cues.update(index, t, feats, self.timeline)
        return self.painter.paint(cue)

    @property
    def backlog(self) -> int:
        """Messages received but not yet taken (the caller steps again without waiting)."""
        return len(self._backlog)

    def _join(self) -> None:
        """Wait for the frame being drawn ahead, so the inputs can change safely."""
        if self._ahead is not None:
            self._ahead[1].exception()

    def step(
        self,
        messages: Iterable[video_pb2.RenderRequest],
        ended: bool,
        stop: threading.Event | None = None,
        budget: float = STEP_SECONDS,
    ) -> list[video_pb2.RenderResponse]:
        """Take new messages, draw and encode what is ready, return the responses.

        Args:
            messages: requests received since the last step.
            ended: whether the client has half-closed.
            stop: set when the stream is cancelled; drawing stops within a frame.
            budget: seconds to draw before returning (the caller calls again).

        Returns:
            Fragments, a Progress when frames were drawn, and the RenderSummary at the end.
        """
        started = time.perf_counter()
        self._join()
        self._backlog.extend(messages)
        self._ending = self._ending or ended
        # Take messages in order, but once a frame can be drawn, draw rather than ingest a
        # burst (a client may send a whole song at once): the rest waits for the next step.
        while self._backlog:
            if time.perf_counter() - started > FEED_SLICE and self._ready(self.next_frame):
                break
            self.feed(self._backlog.popleft())
        if self._ending and not self._backlog:
            self.end_input()
        if self.painter is not None:
            self.timeline.prune(self.song_time(self.next_frame) - PAST_SECONDS - 1.0)
        out: list[video_pb2.RenderResponse] = []
        drawn = 0
        while not (stop is not None and stop.is_set()) and self._ready(self.next_frame):
            if self.painter is None:
                self._start()
            self._draw_one()
            drawn += 1
            fragments = self._fragments(self.encoder.take() if self.encoder else [])
            out.extend(fragments)
            # Hand a finished fragment to the client at once rather than at the budget's end.
            if any(not r.fragment.init for r in fragments) or time.perf_counter() - started > budget:
                break
        finished = self.total_frames is not None and self.next_frame >= self.total_frames
        if finished and not self.done and not (stop is not None and stop.is_set()):
            assert self.encoder is not None
            out.extend(self._fragments(self.encoder.finish()))
            self.done = True
        self.compute_seconds += time.perf_counter() - started
        if drawn:
            out.append(self._progress())
        if self.done:
            out.append(self._summary())
        return out

    def _draw_one(self) -> None:
        assert self.encoder is not None
        k = self.next_frame
        if self._ahead is not None and self._ahead[0] == k:
            canvas = self._ahead[1].result()
        else:
            canvas = self._paint(k)
        self._ahead = None
        if self._pool is not None and self._ready(k + 1):
            self._ahead = (k + 1, self._pool.submit(self._paint, k + 1))
        self.encoder.add_frame(canvas)
        self.next_frame += 1

    def _fragments(self, fragments: list[Fragment]) -> list[video_pb2.RenderResponse]:
        out = []
        for f in fragments:
            self.bytes_out += len(f.data)
            out.append(
                video_pb2.RenderResponse(
                    fragment=video_pb2.VideoFragment(data=f.data, start=f.start, end=f.end, init=f.init)
                )
            )
        return out

    def _progress(self) -> video_pb2.RenderResponse:
        done = max(0.0, self.song_time(self.next_frame))
        total = self.validator.seconds if self.ended else self.spec.expected_seconds
        return video_pb2.RenderResponse(
            progress=audio_pb2.Progress(stage="render", done_seconds=min(done, total) if total else done, total_seconds=total)
        )

    def _summary(self) -> video_pb2.RenderResponse:
        return video_pb2.RenderResponse(
            summary=video_pb2.RenderSummary(
                seconds=self.validator.seconds,
                frames=self.next_frame,
                compute_seconds=self.compute_seconds,
                bytes=self.bytes_out,
            )
        )

    def close(self) -> None:
        """Release threads and encoders (after the last step has returned)."""
        if self._ahead is not None:
            self._ahead[1].cancel()
            try:
                self._ahead[1].exception()
            except Exception:  # a cancelled future raises CancelledError here
                pass
            self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.encoder is not None:
            self.encoder.close()


def song_requests(
    spec: video_pb2.RenderConfig,
    audio: np.ndarray,
    sample_rate: int,
    parts: dict[str, tuple[audio_pb2.Tuning, list[audio_pb2.Note]]],
    beats: video_pb2.Beats | None = None,
    chunk_seconds: float = 1.0,
) -> list[video_pb2.RenderRequest]:
    """A whole song as the messages of one Render stream (config, parts, beats, then
    audio and notes interleaved second by second, as the chain would send them)."""
    reqs = [video_pb2.RenderRequest(config=spec)]
    for name, (tuning, _) in parts.items():
        reqs.append(video_pb2.RenderRequest(part=video_pb2.PartInfo(part=name, tuning=tuning)))
    if beats is not None:
        reqs.append(video_pb2.RenderRequest(beats=beats))
    seconds = audio.shape[0] / sample_rate
    for i, chunk in enumerate(iter_chunks(audio, sample_rate, chunk_seconds)):
        reqs.append(video_pb2.RenderRequest(audio=chunk))
        lo, hi = i * chunk_seconds, (i + 1) * chunk_seconds
        last = hi >= seconds
        for name, (_, notes) in parts.items():
            batch = [n for n in notes if lo <= n.start < hi or (last and n.start >= hi)]
            final = seconds + 1.0 if last else hi
            reqs.append(video_pb2.RenderRequest(notes=audio_pb2.NoteBatch(part=name, notes=batch, final_until=final)))
    return reqs


def render_offline(
    requests: Iterable[video_pb2.RenderRequest],
    backend: Backgrounds,
    config: VideoConfig,
) -> tuple[bytes, RenderSession]:
    """Render a whole stream's messages without a server (warm-up, benchmarks).

    Returns:
        The MP4 file and the finished session (for its timings).
    """
    it = iter(requests)
    first = next(it)
    spec = RenderSpec.from_proto(first.config, config)
    session = RenderSession(spec, backend, config)
    data = bytearray()
    try:
        for message in it:
            for r in session.step([message], False):
                if r.HasField("fragment"):
                    data += r.fragment.data
        while not session.done:
            for r in session.step([], True):
                if r.HasField("fragment"):
                    data += r.fragment.data
    finally:
        session.close()
    return bytes(data), session

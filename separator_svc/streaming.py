"""Exact streaming overlap-add of an HTDemucs bag: apply_model's result, one segment at a time.

`StreamingSeparator` is fed (frames, channels) blocks and returns each stem's audio as
soon as no later segment can change it. It reproduces

    demucs.apply.apply_model(bag, mix, shifts=0, split=True, overlap=overlap)

on the whole song to float tolerance:

* the same segments: length `int(samplerate * model.segment)`, offsets
  `range(0, length, stride)` with `stride = int((1 - overlap) * segment)`;
* the same triangle weights (normalised, raised to `transition_power`) and the same
  accumulation order, divided by the summed weight;
* the same padding of the last, short segments: like demucs's `TensorChunk.padded`,
  a short segment is centred in the model's window, taking real audio from before its
  start and zeros past the end of the song, and the output is centre-trimmed back;
* bag weighting per source: each model's normalised estimate times its weight, summed
  in bag order and divided by the per-source total. Models whose weights are zero for
  every requested stem (e.g. three of htdemucs_ft's four specialists when only one stem
  is asked for) are skipped, and each model is asked only for the requested sources it
  has a weight for, which changes nothing in the returned stems.

Pipelining: with an executor, up to `depth` segments are in flight at once (each
segment's forward passes run in a worker while the next segment's input is cut); their
results are added in segment order, so the sums, and the stems, are the same as one at a
time. `push` returns what has become final so far and waits only when `depth` segments
are already running; `finish` waits for all of them.

Latency and memory: the first stem audio (one stride) is returned as soon as one
segment of input has arrived and been separated. The stream keeps only the input from
half a segment before the next segment's start (a short last segment may reach that far
back) up to the newest frame, about one and a half segments, plus one segment of
weighted sums per model: memory does not grow with the song.

Normalisation: demucs's command line divides the whole track by its mean and standard
deviation before separation, which needs the whole song and cannot stream. We do what
`apply_model` does, no track-level normalisation; HTDemucs still normalises every
segment internally (both branches), so quiet and loud songs are handled alike.

Input at another rate or in mono is converted to 44.1 kHz stereo by the StemStream base
with a streaming soxr resampler; exactness is defined at the model rate.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import torch
from opentelemetry import context as otel_context
from opentelemetry import trace
from torch.nn import functional as F

from separator_svc.base import MODEL_CHANNELS, MODEL_RATE, StemBlocks, StemStream
from separator_svc.runner import SegmentRunner

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def overlap_weight(segment_length: int, transition_power: float = 1.0) -> torch.Tensor:
    """apply_model's triangle weight over one segment (max 1 in the middle)."""
    weight = torch.cat(
        [
            torch.arange(1, segment_length // 2 + 1),
            torch.arange(segment_length - segment_length // 2, 0, -1),
        ]
    )
    return (weight / weight.max()) ** transition_power


def stride_for(segment_length: int, overlap: float) -> int:
    """Hop between segment starts, as apply_model computes it."""
    return int((1 - overlap) * segment_length)


@dataclass
class _Model:
    """One model of the bag as a stream uses it."""

    runner: SegmentRunner
    sources: tuple[int, ...]     # source indices asked of it (requested and weighted)
    rows: list[int]              # the stream's row of each of those sources
    weights: list[float]         # the model's weight for each of those sources
    acc: torch.Tensor            # (len(sources), channels, segment) weighted sums


@dataclass
class _Job:
    """A segment whose forward passes were started: where it lies and their results."""

    offset: int
    length: int
    delta: int
    total: int | None
    result: Future[list[torch.Tensor]] | list[torch.Tensor]
    span: trace.Span


class StreamingSeparator(StemStream):
    """Separates one song with a bag of HTDemucs models, segment by segment.

    Args:
        runners: one SegmentRunner per model of the bag, in bag order.
        weights: the bag's weights, one list per model with one float per source.
        sources: every source the models produce, in model order.
        stems: the stems to return; each a source name or an alias key.
        segment_length: model segment in frames (`int(samplerate * segment)`).
        overlap: fraction shared by neighbouring segments, 0 <= overlap < 1.
        transition_power: sharpness of the cross-fade (>= 1), as in apply_model.
        aliases: stem name -> source name for stems served from another source.
        in_rate: rate of the pushed blocks (resampled to 44.1 kHz when different).
        in_channels: channels of the pushed blocks (mono is duplicated to stereo).
        executor: runs segments' forward passes (None: in the calling thread).
        depth: segments in flight at once with an executor (>= 1).
    """

    def __init__(
        self,
        runners: Sequence[SegmentRunner],
        weights: Sequence[Sequence[float]],
        sources: Sequence[str],
        stems: Sequence[str],
        segment_length: int,
        overlap: float = 0.25,
        transition_power: float = 1.0,
        aliases: Mapping[str, str] | None = None,
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
        executor: Executor | None = None,
        depth: int = 1,
    ) -> None:
        super().__init__(stems, in_rate, in_channels)
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if transition_power < 1:
            raise ValueError("transition_power < 1 is not supported (as in apply_model)")
        if len(runners) != len(weights):
            raise ValueError("one weight list per model is needed")
        if depth < 1:
            raise ValueError("depth must be >= 1")
        aliases = dict(aliases or {})
        self.sources = tuple(sources)
        source_names = [aliases.get(stem, stem) for stem in self.stems]
        # Sources to compute (each once, in model order) and which one each stem reads.
        self._src_idx = sorted({self.sources.index(name) for name in source_names})
        self._stem_row = [self._src_idx.index(self.sources.index(name)) for name in source_names]
        self._totals = [sum(float(w[k]) for w in weights) for k in range(len(self.sources))]
        self.segment_length = int(segment_length)
        self.stride = stride_for(self.segment_length, overlap)
        if self.stride < 1:
            raise ValueError("overlap leaves no stride between segments")
        # Each model is asked only for the requested sources it has a weight for; a model
        # with none (another specialist of htdemucs_ft) is not run at all.
        self._models: list[_Model] = []
        for runner, w in zip(runners, weights, strict=True):
            rows = [row for row, k in enumerate(self._src_idx) if float(w[k]) != 0.0]
            if rows:
                self._models.append(_Model(
                    runner=runner,
                    sources=tuple(self._src_idx[row] for row in rows),
                    rows=rows,
                    weights=[float(w[self._src_idx[row]]) for row in rows],
                    acc=torch.zeros(len(rows), self.channels, self.segment_length),
                ))
        self._weight = overlap_weight(self.segment_length, transition_power)
        self._sum_weight = torch.zeros(self.segment_length)
        self._buf = np.zeros((self.channels, 0), np.float32)  # input frames from _buf_start on
        self._buf_start = 0
        self._offset = 0  # start of the next segment to cut
        self._executor = executor
        self._depth = depth if executor is not None else 1
        self._inflight: deque[_Job] = deque()

    @property
    def buffered_frames(self) -> int:
        """Input frames held right now (bounded by about 1.5 segments plus one block)."""
        return int(self._buf.shape[1])

    @property
    def in_flight(self) -> int:
        """Segments whose forward passes were started but not yet added up."""
        return len(self._inflight)

    def oldest(self) -> Future[list[torch.Tensor]] | None:
        """The oldest in-flight segment's forward passes, to wait on (None: nothing runs).

        Once it is done, a `push` of no frames returns the audio it finalised.
        """
        if self._inflight and isinstance(self._inflight[0].result, Future):
            return self._inflight[0].result
        return None

    def _push(self, block: np.ndarray) -> StemBlocks:
        if block.shape[0]:
            self._buf = np.concatenate([self._buf, np.ascontiguousarray(block.T)], axis=1)
        outs: list[StemBlocks] = []
        end = self._buf_start + self._buf.shape[1]
        while end >= self._offset + self.segment_length:
            self.check_cancelled()
            self._start(total=None)
            # At most `depth` segments run at once: wait for the oldest beyond that.
            while len(self._inflight) >= self._depth:
                outs.append(self._complete())
        outs.append(self._drain())
        return self._join(outs)

    def _drain(self) -> StemBlocks:
        """Add up the in-flight segments that have finished, oldest first."""
        outs: list[StemBlocks] = []
        while self._inflight and _done(self._inflight[0].result):
            outs.append(self._complete())
        return self._join(outs)

    def _finish(self) -> StemBlocks:
        total = self._buf_start + self._buf.shape[1]
        outs: list[StemBlocks] = []
        while self._offset < total:
            self.check_cancelled()
            self._start(total=total)
            while len(self._inflight) >= self._depth:
                outs.append(self._complete())
        while self._inflight:
            self.check_cancelled()
            outs.append(self._complete())
        self._buf = np.zeros((self.channels, 0), np.float32)
        return self._join(outs)

    def _start(self, total: int | None) -> None:
        """Cut the segment at `self._offset` and start its forward passes.

        `total` is the song length once the input has ended (segments may then be
        short); None while streaming (the segment is then always complete).
        """
        seg_len = self.segment_length
        offset = self._offset
        known = self._buf_start + self._buf.shape[1]
        length = seg_len if total is None else min(seg_len, total - offset)
        delta = seg_len - length
        start = offset - delta // 2
        lo, hi = max(start, 0), min(start + seg_len, known)
        window = torch.from_numpy(self._buf[:, lo - self._buf_start : hi - self._buf_start].copy())
        segment = F.pad(window, (lo - start, start + seg_len - hi))
        # A child of whatever span the calling thread made current (the server's step);
        # it ends when the segment's forward passes do, in whichever thread runs them.
        attributes: dict[str, str | int | float] = {
            "audio.offset": offset / self.sample_rate,
            "audio.seconds": length / self.sample_rate,
            "segment.index": self.segments,
            "models": len(self._models),
            "device": str(self._models[0].runner.device) if self._models else "",
            "model.name": ",".join(m.runner.name for m in self._models),
        }
        span = tracer.start_span("separate.segment", attributes=attributes)
        context = trace.set_span_in_context(span)
        result: Future[list[torch.Tensor]] | list[torch.Tensor]
        if self._executor is None:
            result = self._forward(segment, context)
        else:
            result = self._executor.submit(self._forward, segment, context)
        self._inflight.append(_Job(offset, length, delta, total, result, span))
        self.segments += 1
        self._offset += self.stride
        # A short last segment may reach back half a segment before its start.
        keep_from = max(0, self._offset - seg_len // 2)
        if keep_from > self._buf_start:
            self._buf = self._buf[:, keep_from - self._buf_start :].copy()
            self._buf_start = keep_from

    def _forward(self, segment: torch.Tensor, context: otel_context.Context) -> list[torch.Tensor]:
        """Every model's requested sources for one segment (runs in a worker thread)."""
        span = trace.get_current_span(context)
        token = otel_context.attach(context)
        try:
            return [m.runner.run(segment, m.sources) for m in self._models]
        finally:
            otel_context.detach(token)
            span.end()

    def _complete(self) -> StemBlocks:
        """Add the oldest in-flight segment into the sums and return the frames it finalised."""
        job = self._inflight.popleft()
        outs = job.result.result() if isinstance(job.result, Future) else job.result
        weight = self._weight[: job.length]
        lo = job.delta // 2
        for model, out in zip(self._models, outs, strict=True):
            model.acc[..., : job.length] += weight * out[..., lo : lo + job.length]
        self._sum_weight[: job.length] += weight
        last = job.total is not None and job.offset + self.stride >= job.total
        n = (job.total - job.offset) if last and job.total is not None else self.stride
        result = self._finalise(n)
        self._shift(n)
        return result

    def _finalise(self, n: int) -> StemBlocks:
        estimate = torch.zeros(len(self._src_idx), self.channels, n)
        for model in self._models:
            res = model.acc[..., :n] / self._sum_weight[:n]
            for j, (row, w) in enumerate(zip(model.rows, model.weights, strict=True)):
                estimate[row] += res[j] * w
        for row, k in enumerate(self._src_idx):
            estimate[row] /= self._totals[k]
        return {
            stem: np.ascontiguousarray(estimate[row].T.numpy(), dtype=np.float32)
            for stem, row in zip(self.stems, self._stem_row, strict=True)
        }

    def _shift(self, n: int) -> None:
        for model in self._models:
            model.acc = torch.cat([model.acc[..., n:], torch.zeros_like(model.acc[..., :n])], dim=-1)
        self._sum_weight = torch.cat([self._sum_weight[n:], torch.zeros(n)])

    def _join(self, outs: list[StemBlocks]) -> StemBlocks:
        if not outs:
            return self.empty()
        if len(outs) == 1:
            return outs[0]
        return {stem: np.concatenate([o[stem] for o in outs]) for stem in self.stems}


def _done(result: Future[list[torch.Tensor]] | list[torch.Tensor]) -> bool:
    return not isinstance(result, Future) or result.done()

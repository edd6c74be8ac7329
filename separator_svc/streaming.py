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
  is asked for) are skipped, which changes nothing in the returned stems.

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
from collections.abc import Mapping, Sequence

import numpy as np
import torch
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
    ) -> None:
        super().__init__(stems, in_rate, in_channels)
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if transition_power < 1:
            raise ValueError("transition_power < 1 is not supported (as in apply_model)")
        if len(runners) != len(weights):
            raise ValueError("one weight list per model is needed")
        aliases = dict(aliases or {})
        self.sources = tuple(sources)
        source_names = [aliases.get(stem, stem) for stem in self.stems]
        # Sources to compute (each once, in model order) and which one each stem reads.
        self._src_idx = sorted({self.sources.index(name) for name in source_names})
        self._stem_row = [self._src_idx.index(self.sources.index(name)) for name in source_names]
        self._totals = [sum(float(w[k]) for w in weights) for k in range(len(self.sources))]
        self._models = [
            (runner, [float(w[k]) for k in self._src_idx])
            for runner, w in zip(runners, weights, strict=True)
            if any(float(w[k]) != 0.0 for k in self._src_idx)
        ]
        self.segment_length = int(segment_length)
        self.stride = stride_for(self.segment_length, overlap)
        if self.stride < 1:
            raise ValueError("overlap leaves no stride between segments")
        self._weight = overlap_weight(self.segment_length, transition_power)
        n_src = len(self._src_idx)
        self._acc = [
            torch.zeros(n_src, self.channels, self.segment_length) for _ in self._models
        ]
        self._sum_weight = torch.zeros(self.segment_length)
        self._buf = np.zeros((self.channels, 0), np.float32)  # input frames from _buf_start on
        self._buf_start = 0
        self._offset = 0  # start of the next segment (and of the first frame not returned)

    @property
    def buffered_frames(self) -> int:
        """Input frames held right now (bounded by about 1.5 segments plus one block)."""
        return int(self._buf.shape[1])

    def _push(self, block: np.ndarray) -> StemBlocks:
        if block.shape[0]:
            self._buf = np.concatenate([self._buf, np.ascontiguousarray(block.T)], axis=1)
        outs: list[StemBlocks] = []
        end = self._buf_start + self._buf.shape[1]
        while end >= self._offset + self.segment_length:
            self.check_cancelled()
            outs.append(self._segment(total=None))
        return self._join(outs)

    def _finish(self) -> StemBlocks:
        total = self._buf_start + self._buf.shape[1]
        outs: list[StemBlocks] = []
        while self._offset < total:
            self.check_cancelled()
            outs.append(self._segment(total=total))
        self._buf = np.zeros((self.channels, 0), np.float32)
        return self._join(outs)

    def _segment(self, total: int | None) -> StemBlocks:
        """Separate the segment at `self._offset` and return the frames it finalised.

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
        window = torch.from_numpy(self._buf[:, lo - self._buf_start : hi - self._buf_start])
        segment = F.pad(window, (lo - start, start + seg_len - hi))
        weight = self._weight[:length]
        # A child of whatever span the calling thread made current (the server's step).
        attributes: dict[str, str | int | float] = {
            "audio.offset": offset / self.sample_rate,
            "audio.seconds": length / self.sample_rate,
            "segment.index": self.segments,
            "models": len(self._models),
            "device": str(self._models[0][0].device) if self._models else "",
            "model.name": ",".join(runner.name for runner, _ in self._models),
        }
        with tracer.start_as_current_span("separate.segment", attributes=attributes):
            for (runner, _), acc in zip(self._models, self._acc, strict=True):
                out = runner.run(segment)  # (sources, channels, seg_len)
                trimmed = out[self._src_idx, :, delta // 2 : delta // 2 + length]
                acc[..., :length] += weight * trimmed
        self._sum_weight[:length] += weight
        self.segments += 1

        last = total is not None and offset + self.stride >= total
        n = (total - offset) if last and total is not None else self.stride
        result = self._finalise(n)
        self._offset += self.stride
        self._shift(n)
        # A short last segment may reach back half a segment before its start.
        keep_from = max(0, self._offset - seg_len // 2)
        if keep_from > self._buf_start:
            self._buf = self._buf[:, keep_from - self._buf_start :].copy()
            self._buf_start = keep_from
        return result

    def _finalise(self, n: int) -> StemBlocks:
        estimate: float | torch.Tensor = 0.0
        for (_, model_weights), acc in zip(self._models, self._acc, strict=True):
            res = acc[..., :n] / self._sum_weight[:n]
            for row, w in enumerate(model_weights):
                res[row] *= w
            estimate = estimate + res
        assert isinstance(estimate, torch.Tensor)
        for row, k in enumerate(self._src_idx):
            estimate[row] /= self._totals[k]
        return {
            stem: np.ascontiguousarray(estimate[row].T.numpy(), dtype=np.float32)
            for stem, row in zip(self.stems, self._stem_row, strict=True)
        }

    def _shift(self, n: int) -> None:
        for i, acc in enumerate(self._acc):
            self._acc[i] = torch.cat([acc[..., n:], torch.zeros_like(acc[..., :n])], dim=-1)
        self._sum_weight = torch.cat([self._sum_weight[n:], torch.zeros(n)])

    def _join(self, outs: list[StemBlocks]) -> StemBlocks:
        if not outs:
            return self.empty()
        if len(outs) == 1:
            return outs[0]
        return {stem: np.concatenate([o[stem] for o in outs]) for stem in self.stems}

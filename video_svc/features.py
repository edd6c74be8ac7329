"""Causal audio features for the background: loudness and onsets, hop by hop as audio streams in."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

HOP_SECONDS = 512 / 44_100     # ~11.6 ms, the same hop at every sample rate
MIN_ONSET_GAP = 0.08           # seconds between two onset events


@dataclass(frozen=True)
class FrameFeatures:
    """What the audio did during one video frame."""

    loudness: float = 0.0      # 0..1, relative to the loudest passage so far
    onset: float = 0.0         # 0..1 onset strength (spectral flux against its recent mean)
    onset_time: float | None = None   # song time of an onset event inside the frame, if any


class AudioAnalyzer:
    """Short-time loudness and spectral-flux onsets of a mono mix, computed causally.

    Audio is pushed in blocks of any size; each hop's features depend only on audio up to
    the end of its window, and normalisation uses running statistics, so features never
    change once computed. Hops are kept only until the frames covering them are drawn.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        self.hop = max(16, int(round(HOP_SECONDS * self.sample_rate)))
        self.n_fft = 2 * self.hop
        self.window = np.hanning(self.n_fft).astype(np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._consumed = 0            # samples before _pending[0]
        self._prev_mag: np.ndarray | None = None
        self._peak_db = -40.0
        self._flux_mean = 0.0
        self._last_onset = -math.inf
        self._prev_flux = 0.0
        self._hops: deque[tuple[float, float, float, bool]] = deque()  # (time, loudness, onset, event)
        self.covered_until = 0.0      # song time up to which hops are complete
        self.finished = False

    def push(self, samples: np.ndarray) -> None:
        """Analyse a (frames, channels) float32 block that continues the stream."""
        mono = samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)
        self._pending = np.concatenate([self._pending, mono])
        self._run()

    def finish(self) -> None:
        """Analyse the tail (zero-padded) once the stream has ended."""
        if self.finished:
            return
        self.finished = True
        self._pending = np.concatenate([self._pending, np.zeros(self.n_fft, dtype=np.float32)])
        self._run()
        self.covered_until = math.inf

    def _run(self) -> None:
        n = (self._pending.size - self.n_fft) // self.hop + 1
        if n <= 0:
            return
        frames = np.lib.stride_tricks.sliding_window_view(self._pending, self.n_fft)[:: self.hop][:n]
        rms = np.sqrt(np.mean(frames * frames, axis=1) + 1e-12)
        mag = np.log1p(10.0 * np.abs(np.fft.rfft(frames * self.window, axis=1)))
        prev = self._prev_mag if self._prev_mag is not None else mag[0]
        diff = np.diff(np.vstack([prev[None, :], mag]), axis=0)
        flux = np.maximum(diff, 0.0).sum(axis=1) / mag.shape[1]
        self._prev_mag = mag[-1]
        decay_db = 3.0 * self.hop / self.sample_rate      # the reference peak falls 3 dB/s
        mean_rate = self.hop / self.sample_rate / 1.5       # flux mean over ~1.5 s
        for i in range(n):
            start = self._consumed + i * self.hop
            t = (start + self.n_fft / 2) / self.sample_rate
            db = 20.0 * math.log10(float(rms[i]))
            self._peak_db = max(db, self._peak_db - decay_db, -40.0)
            loud = min(max((db - (self._peak_db - 45.0)) / 45.0, 0.0), 1.0)
            f = float(flux[i])
            ref = 2.0 * self._flux_mean + 1e-3
            onset = min(f / (2.0 * ref), 1.0)
            event = f > ref and f > self._prev_flux and t - self._last_onset >= MIN_ONSET_GAP and loud > 0.05
            if event:
                self._last_onset = t
            self._prev_flux = f
            self._flux_mean += mean_rate * (f - self._flux_mean)
            self._hops.append((t, loud, onset, event))
        used = n * self.hop
        self._pending = self._pending[used:]
        self._consumed += used
        self.covered_until = (self._consumed + self.n_fft / 2) / self.sample_rate

    def frame(self, t0: float, t1: float) -> FrameFeatures:
        """Features of the frame covering song time [t0, t1); forgets hops before t0.

        Frames must be asked for in time order.
        """
        while self._hops and self._hops[0][0] < t0:
            self._hops.popleft()
        loud = []
        onset = 0.0
        when = None
        for t, lo, on, event in self._hops:
            if t >= t1:
                break
            loud.append(lo)
            onset = max(onset, on)
            if event and when is None:
                when = t
        return FrameFeatures(float(np.mean(loud)) if loud else 0.0, onset, when)

    @property
    def buffered_hops(self) -> int:
        """Hops analysed but not yet drawn (a memory gauge)."""
        return len(self._hops)

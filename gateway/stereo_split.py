"""The guitar stem split by stereo position into a lead (centre) and a rhythm (sides) signal, streamed.

Mixes put the lead guitar in the middle and double-track the rhythm guitar, one take
hard left and one hard right. The separator keeps the stem stereo (Demucs and the DSP
fallback alike); the transcriber takes mono. Per STFT bin, the centred share is the
channels' normalised cross-power

    c = 2 Re(L R*) / (|L|^2 + |R|^2)

(1 for a sound equal in both channels; 0.92 for one panned 40 % to a side, 0.69 at
70 %, 0 hard-panned; about 0 for two different takes on the two sides), smoothed over a
few frames; the lead signal is the mid (L + R) / 2 masked by
`clip((c - floor) / (top - floor), 0, 1) ** power`, the rhythm signal the rest of the
mid, so the two add up to the mono stem exactly.

A stem with no stereo image (a mono mix, or every guitar in the middle: side energy
under `width_min` of the mid's over the last seconds) cannot be split by position: both
parts then get the whole mono stem and `gateway.partsplit` tells lead from rhythm by
chords and register alone.

STFT: `n_fft`-point frames every `hop` samples with sqrt-Hann analysis and synthesis
windows (they overlap-add to a constant at hop = n_fft / 4), streamed with n_fft samples
of latency and a few frames of state; the output is sample-aligned with the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTS = ("lead", "rhythm")


@dataclass(frozen=True)
class SplitSettings:
    """The splitter's knobs (defaults chosen on the dev mixes of bench/part_split.py)."""

    n_fft: int = 2048
    hop: int = 512
    smooth: float = 0.6          # weight of the previous frame in the cross-power average
    floor: float = 0.3           # coherence at and below which a bin is all rhythm
    top: float = 1.0             # coherence at and above which a bin is all lead
    power: float = 2.0
    width_min: float = 0.02      # side / mid energy under which the stem counts as mono
    width_memory: float = 3.0    # seconds the width is averaged over


class StereoSplit:
    """Turns (frames, 2) blocks of the guitar stem into mono lead and rhythm blocks.

    Args:
        sample_rate: the stem's rate.
        settings: STFT and mask settings.
    """

    def __init__(self, sample_rate: int, settings: SplitSettings = SplitSettings()) -> None:
        s = settings
        if s.n_fft % (4 * s.hop):
            raise ValueError("hop must be a quarter of n_fft")
        self.settings = s
        self.sample_rate = sample_rate
        self._window = np.sqrt(np.hanning(s.n_fft + 1)[:-1]).astype(np.float64)
        self._in = np.zeros((2, s.n_fft - s.hop))       # the zeros before the song
        self._ola = np.zeros((2, s.n_fft))
        self._cross = np.zeros(s.n_fft // 2 + 1)
        self._power = np.zeros(s.n_fft // 2 + 1)
        self._side = 0.0
        self._mid = 0.0
        self._decay = float(np.exp(-s.hop / (s.width_memory * sample_rate)))
        self._skip = s.n_fft - s.hop                     # output samples before the song
        self.samples_in = 0
        self.samples_out = 0
        self.mono_frames = 0
        self.frames = 0

    @property
    def mono(self) -> bool:
        """Whether the stem has shown no stereo image so far (both parts get all of it)."""
        return self._side <= self.settings.width_min * max(self._mid, 1e-12)

    def push(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Add (n, 2) or (n, 1) float samples; returns each part's mono samples now final."""
        block = np.asarray(frames, dtype=np.float64)
        if block.ndim == 1:
            block = block[:, None]
        if block.shape[1] == 1:
            block = np.repeat(block, 2, axis=1)
        self.samples_in += block.shape[0]
        self._in = np.concatenate([self._in, block[:, :2].T], axis=1)
        return self._run(final=False)

    def finish(self) -> dict[str, np.ndarray]:
        """End of the stem: the remaining samples, the output as long as the input."""
        self._in = np.concatenate([self._in, np.zeros((2, self.settings.n_fft))], axis=1)
        return self._run(final=True)

    def _run(self, final: bool) -> dict[str, np.ndarray]:
        s = self.settings
        outs: list[np.ndarray] = []
        while self._in.shape[1] >= s.n_fft:
            outs.append(self._frame(self._in[:, : s.n_fft]))
            self._in = self._in[:, s.hop :]
        out = np.concatenate(outs, axis=1) if outs else np.zeros((2, 0))
        if self._skip:
            cut = min(self._skip, out.shape[1])
            out = out[:, cut:]
            self._skip -= cut
        if final:
            out = out[:, : max(0, self.samples_in - self.samples_out)]
        self.samples_out += out.shape[1]
        return {name: out[k].astype(np.float32) for k, name in enumerate(PARTS)}

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        """Mask one frame and overlap-add it; returns the `hop` samples now final (2, hop)."""
        s = self.settings
        spec = np.fft.rfft(frame * self._window, axis=1)
        left, right = spec[0], spec[1]
        mid = 0.5 * (left + right)
        a = s.smooth
        self._cross = a * self._cross + (1 - a) * 2.0 * np.real(left * np.conj(right))
        self._power = a * self._power + (1 - a) * (np.abs(left) ** 2 + np.abs(right) ** 2)
        side_energy = float(np.sum(np.abs(0.5 * (left - right)) ** 2))
        mid_energy = float(np.sum(np.abs(mid) ** 2))
        self._side = self._decay * self._side + (1 - self._decay) * side_energy
        self._mid = self._decay * self._mid + (1 - self._decay) * mid_energy
        self.frames += 1
        if self.mono:
            self.mono_frames += 1
            masks = np.ones((2, mid.size))
        else:
            coherence = self._cross / np.maximum(self._power, 1e-12)
            lead = np.clip((coherence - s.floor) / (s.top - s.floor), 0.0, 1.0) ** s.power
            masks = np.stack([lead, 1.0 - lead])
        # sqrt-Hann twice is Hann; at a quarter-frame hop four of them sum to 2.
        frames = np.fft.irfft(masks * mid[None, :], n=s.n_fft, axis=1) * self._window * 0.5
        self._ola += frames
        done = self._ola[:, : s.hop].copy()
        self._ola = np.concatenate([self._ola[:, s.hop :], np.zeros((2, s.hop))], axis=1)
        return done

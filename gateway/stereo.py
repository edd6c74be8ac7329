"""Where a note sits in the stereo field of the mix: evidence for which part played it.

A bass is almost always mixed in the centre; guitars are often panned. When separation
leaves the bass in the guitar stem, the transcriber hears the bass's notes and overtones
as guitar notes, which look like the guitar's own to Basic Pitch. In the mix, though,
their partials come from where the bass sits. `StereoField` keeps the last
`seconds` of the song's stereo mix (at half rate, 16-bit: about 4 MB for 45 s) and, for
a note, measures the balance of its first three partials over its first 120 ms:
(R - L) / (R + L) of their energy, -1 hard left, +1 hard right (`pan`).

Memory is bounded by `seconds`; notes older than that (they arrive late: the transcriber
decodes and fingers with look-ahead) get no answer (None) and the caller decides without.
"""

from __future__ import annotations

import numpy as np

RATE = 22_050          # the mix is kept at half of 44.1 kHz: partials up to ~10 kHz
WINDOW = 0.12          # seconds of a note's start analysed
PARTIALS = (1, 2, 3)


def _hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


class StereoField:
    """A bounded window of a song's stereo mix, and the stereo position of notes in it.

    Args:
        seconds: how much of the mix to keep.
        in_rate: the rate of the blocks pushed (44.1 kHz in the gateway).
    """

    def __init__(self, seconds: float = 45.0, in_rate: int = 44_100) -> None:
        if in_rate % RATE:
            raise ValueError(f"StereoField takes multiples of {RATE} Hz, not {in_rate}")
        self.step = in_rate // RATE
        self.capacity = int(seconds * RATE)
        self._buf = np.zeros((self.capacity, 2), np.int16)
        self._written = 0            # frames at RATE written since the song's start
        self._carry = np.zeros((0, 2), np.float32)
        self._window = np.hanning(int(WINDOW * RATE)).astype(np.float32)[:, None]
        self._freqs = np.fft.rfftfreq(self._window.shape[0], 1.0 / RATE)

    def push(self, block: np.ndarray) -> None:
        """Add the next (frames, channels) float block of the mix (mono is centred)."""
        if block.ndim == 1 or block.shape[1] == 1:
            block = np.repeat(block.reshape(-1, 1), 2, axis=1)
        data = np.concatenate([self._carry, block[:, :2].astype(np.float32)])
        usable = data.shape[0] - data.shape[0] % self.step
        self._carry = data[usable:]
        # Averaging `step` samples is the decimation's low-pass: the partials analysed
        # are far below where its response falls off.
        half = data[:usable].reshape(-1, self.step, 2).mean(axis=1)
        pcm = (np.clip(half, -1.0, 1.0) * 32767).astype(np.int16)
        for start in range(0, pcm.shape[0], self.capacity):
            part = pcm[start : start + self.capacity]
            at = self._written % self.capacity
            first = min(part.shape[0], self.capacity - at)
            self._buf[at : at + first] = part[:first]
            self._buf[: part.shape[0] - first] = part[first:]
            self._written += part.shape[0]

    def pan(self, pitch: float, start: float) -> float | None:
        """The stereo balance of a note's first partials at its start (None when not held)."""
        a = int(round(start * RATE))
        n = self._window.shape[0]
        if a < 0 or a + n > self._written or a < self._written - self.capacity:
            return None
        idx = (np.arange(a, a + n) % self.capacity)
        seg = self._buf[idx].astype(np.float32) * self._window
        spec = np.abs(np.fft.rfft(seg, axis=0)) ** 2
        left = right = 0.0
        for k in PARTIALS:
            f = k * _hz(pitch)
            if f >= RATE / 2 * 0.9:
                break
            near = np.abs(self._freqs - f) < max(8.0, 0.015 * f)
            left += float(spec[near, 0].sum())
            right += float(spec[near, 1].sum())
        total = left + right
        if total <= 1e-9:
            return None
        return (right - left) / total

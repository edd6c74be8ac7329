"""How hard each note is struck: the jump of the audio's energy at its onset, streamed.

A pick re-excites the string, so the energy right after a picked note's onset is well
above the energy just before it; a hammer-on or pull-off taps in less, a bend or a slide
adds none (the string just keeps ringing at a new pitch). `AttackMeter` keeps a short
RMS envelope of the stream's audio (one value per Basic Pitch frame, 256 samples at
22,050 Hz) and answers `jump(t)`: the loudest envelope value in the `AFTER` seconds
from `t` over the mean envelope from `BEFORE[0]` to `BEFORE[1]` seconds before it.
`tabagent.techniques` reads it as Note.attack. Only the last `keep` seconds are kept.
"""

from __future__ import annotations

import numpy as np

HOP = 256                    # samples per envelope value (a Basic Pitch frame at 22,050 Hz)
AFTER = 0.08                 # seconds after the onset searched for the new level
BEFORE = (0.06, 0.02)        # seconds before the onset averaged for the old level
FLOOR = 1e-5                 # RMS below which the old level counts as silence


class AttackMeter:
    """A streaming RMS envelope that measures attacks at note onsets.

    Args:
        sample_rate: rate of the pushed samples.
        keep: seconds of envelope kept (notes arrive from the decoder a few seconds late).
    """

    def __init__(self, sample_rate: int, keep: float = 60.0) -> None:
        self.sample_rate = sample_rate
        self.rate = sample_rate / HOP
        self.keep = int(keep * self.rate)
        self._env = np.zeros(0, dtype=np.float32)
        self._offset = 0                      # envelope index of self._env[0]
        self._rest = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> None:
        """Add mono samples."""
        data = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32).reshape(-1)])
        n = data.size // HOP
        if n:
            frames = data[: n * HOP].reshape(n, HOP).astype(np.float64)
            self._env = np.concatenate([self._env, np.sqrt((frames**2).mean(axis=1)).astype(np.float32)])
        self._rest = data[n * HOP :]
        if self._env.size > self.keep:
            drop = self._env.size - self.keep
            self._env = self._env[drop:]
            self._offset += drop

    def jump(self, t: float) -> float:
        """The attack at time `t` seconds (0 when that audio is not held)."""
        i = int(round(t * self.rate)) - self._offset
        after = self._env[max(0, i) : max(0, i + int(np.ceil(AFTER * self.rate)) + 1)]
        lo, hi = i - int(round(BEFORE[0] * self.rate)), i - int(round(BEFORE[1] * self.rate))
        before = self._env[max(0, lo) : max(0, hi)]
        if not after.size or i < 0:
            return 0.0
        level = float(before.mean()) if before.size else 0.0
        return float(after.max()) / max(level, FLOOR)

"""Tempo, beats and bars of a mix, and the musical grid that notes are quantised to.

`BeatTracker` is fed mono blocks at any sample rate and keeps only an onset-strength
envelope (100 frames a second: about 1.4 MB for an hour), so memory does not depend on
how much audio went through. `result()` estimates the tempo (autocorrelation with a
prior around 120 BPM), tracks beats by dynamic programming (Ellis 2007), and picks the
metre and the downbeats. The tempo is a whole number of BPM, as Guitar Pro stores it.

`Grid` is the constant-tempo grid every export shares: time 0 is a grid step and bars
start `phase` steps later (an anacrusis fills the steps before the first downbeat).
`quantize` snaps notes to it and `Grid.bars` cuts a piece into bars.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from tabagent.notes import Note

logger = logging.getLogger(__name__)

FRAME_RATE = 100.0  # onset-envelope frames per second (nominal)
DEFAULT_TEMPO = 120.0
_MIN_BPM, _MAX_BPM = 50.0, 220.0


@dataclass(frozen=True)
class Bar:
    """One bar of the grid: its first step, its length in steps and its time signature.

    A `pickup` bar (an anacrusis) is shorter than its time signature says: notation
    writes it as an incomplete first measure, not as a bar of another metre.
    """

    index: int
    start_step: int
    steps: int
    time_signature: tuple[int, int]
    pickup: bool = False


@dataclass(frozen=True)
class Grid:
    """A constant-tempo grid of `subdivision` steps per beat, starting at time 0.

    Attributes:
        tempo: beats (quarter notes) per minute.
        subdivision: steps per beat (a power of two: 4 means sixteenth notes).
        beats_per_bar: beats in a full bar.
        phase: steps from time 0 to the first full bar's downbeat (0 <= phase < a bar).
    """

    tempo: float
    subdivision: int = 4
    beats_per_bar: int = 4
    phase: int = 0

    @property
    def step_seconds(self) -> float:
        return 60.0 / self.tempo / self.subdivision

    @property
    def bar_steps(self) -> int:
        return self.beats_per_bar * self.subdivision

    def step_of(self, t: float) -> int:
        """The nearest step to time `t` (seconds)."""
        return max(0, int(math.floor(t / self.step_seconds + 0.5)))

    def time_of(self, step: int) -> float:
        return step * self.step_seconds

    def bars(self, end_step: int) -> list[Bar]:
        """The bars covering steps [0, end_step); a short first bar (a pickup) holds any anacrusis.

        Args:
            end_step: one past the last step that must be covered.

        Returns:
            Bars in order; every bar but the anacrusis is full.
        """
        bars: list[Bar] = []
        start = 0
        full = (self.beats_per_bar, 4)
        if self.phase:
            bars.append(Bar(0, 0, self.phase, full, pickup=True))
            start = self.phase
        while start < max(end_step, 1):
            bars.append(Bar(len(bars), start, self.bar_steps, full))
            start += self.bar_steps
        return bars


@dataclass
class Rhythm:
    """Tempo (BPM), beat and downbeat times (seconds) and the metre of a piece."""

    tempo: float = DEFAULT_TEMPO
    beats: list[float] = field(default_factory=list)
    downbeats: list[float] = field(default_factory=list)
    beats_per_bar: int = 4
    time_signature: tuple[int, int] = (4, 4)

    @classmethod
    def constant(cls, tempo: float, seconds: float, beats_per_bar: int = 4, first_downbeat: float = 0.0) -> Rhythm:
        """A metronomic rhythm: beats every 60/tempo s from `first_downbeat` (and before it)."""
        period = 60.0 / tempo
        k0 = -int(first_downbeat // period)
        beats = [first_downbeat + k * period for k in range(k0, int((seconds - first_downbeat) / period) + 1)]
        downbeats = [b for k, b in zip(range(k0, k0 + len(beats)), beats, strict=False) if k % beats_per_bar == 0]
        return cls(float(tempo), beats, downbeats, beats_per_bar, (beats_per_bar, 4))

    def grid(self, subdivision: int = 4) -> Grid:
        """The constant-tempo grid of this rhythm, its bars aligned to the first downbeat.

        Args:
            subdivision: steps per beat (1, 2, 4 or 8).

        Returns:
            The Grid.
        """
        if subdivision not in (1, 2, 4, 8):
            raise ValueError(f"subdivision must be 1, 2, 4 or 8, got {subdivision}")
        grid = Grid(float(self.tempo), subdivision, self.beats_per_bar, 0)
        if self.downbeats:
            phase = grid.step_of(self.downbeats[0] % (grid.bar_steps * grid.step_seconds))
            grid = replace(grid, phase=phase % grid.bar_steps)
        return grid

    def to_dict(self) -> dict[str, object]:
        return {
            "tempo": self.tempo,
            "beats": [round(b, 4) for b in self.beats],
            "downbeats": [round(b, 4) for b in self.downbeats],
            "beats_per_bar": self.beats_per_bar,
            "time_signature": list(self.time_signature),
        }


def quantize(notes: Iterable[Note], rhythm: Rhythm | Grid, subdivision: int = 4) -> list[Note]:
    """Copies of `notes` with start and end snapped to the grid (each at least one step).

    Args:
        notes: notes in seconds.
        rhythm: the piece's Rhythm (or a Grid already made from it).
        subdivision: steps per beat when `rhythm` is a Rhythm.

    Returns:
        New notes; the originals are untouched.
    """
    grid = rhythm if isinstance(rhythm, Grid) else rhythm.grid(subdivision)
    out = []
    for note in notes:
        a = grid.step_of(note.start)
        b = max(a + 1, grid.step_of(note.end))
        out.append(replace(note, start=grid.time_of(a), end=grid.time_of(b), pitch_bend=list(note.pitch_bend)))
    return out


class BeatTracker:
    """Streaming tempo and beat tracking from a mono mix.

    Args:
        sample_rate: rate of the blocks pushed.
    """

    def __init__(self, sample_rate: int) -> None:
        if sample_rate < 4000:
            raise ValueError(f"sample rate too low for beat tracking: {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.hop = max(1, round(sample_rate / FRAME_RATE))
        self.n_fft = 1 << int(math.ceil(math.log2(0.046 * sample_rate)))
        self.fps = sample_rate / self.hop
        self._window = np.hanning(self.n_fft).astype(np.float32)
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        self._low = freqs < 150.0
        self._buffer = np.zeros(self.n_fft - self.hop, dtype=np.float32)  # left padding
        self._prev: np.ndarray | None = None
        self._env: list[np.ndarray] = []
        self._low_env: list[np.ndarray] = []
        self.samples = 0

    def push(self, block: np.ndarray) -> None:
        """Feed the next block of audio (mono, or (frames, channels) which is averaged)."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 2:
            block = block.mean(axis=1)
        self.samples += block.size
        buf = np.concatenate([self._buffer, block])
        n = 0 if buf.size < self.n_fft else 1 + (buf.size - self.n_fft) // self.hop
        if n:
            idx = np.arange(self.n_fft)[None, :] + self.hop * np.arange(n)[:, None]
            spec = np.log1p(100.0 * np.abs(np.fft.rfft(buf[idx] * self._window, axis=1)))
            prev = spec[:1] if self._prev is None else self._prev[None, :]
            flux = np.maximum(np.diff(np.concatenate([prev, spec]), axis=0), 0.0)
            self._env.append(flux.mean(axis=1))
            self._low_env.append(flux[:, self._low].mean(axis=1))
            self._prev = spec[-1]
        self._buffer = buf[n * self.hop :]

    def envelope(self) -> np.ndarray:
        """The onset-strength envelope so far (one value per hop)."""
        return np.concatenate(self._env) if self._env else np.zeros(0)

    def partial(self, last_seconds: float | None = None) -> Rhythm:
        """`result()` of what was pushed so far, safe to call while another thread pushes
        (a running song's draft tab): it reads a consistent copy of the envelopes.

        Args:
            last_seconds: track only the latest this many seconds (beats stream to the
                video renderer: the cost stays that of the window, however long the song).

        Returns:
            The rhythm, its times in seconds from the song's start.
        """
        env, low = list(self._env), list(self._low_env)
        n = min(len(env), len(low))
        clone = copy.copy(self)
        clone._env, clone._low_env = env[:n], low[:n]
        if last_seconds is None or not n:
            return clone.result()
        whole, low_whole = np.concatenate(env[:n]), np.concatenate(low[:n])
        frames = min(whole.size, low_whole.size)
        first = max(0, frames - int(last_seconds * self.fps))
        clone._env, clone._low_env = [whole[first:frames]], [low_whole[first:frames]]
        rhythm = clone.result()
        shift = first / self.fps
        return replace(rhythm, beats=[t + shift for t in rhythm.beats], downbeats=[t + shift for t in rhythm.downbeats])

    def result(self) -> Rhythm:
        """Tempo, beats, downbeats and metre of everything pushed so far."""
        env = self.envelope()
        low = np.concatenate(self._low_env) if self._low_env else np.zeros(0)
        if env.size < 3 * self.fps or not np.any(env > 0):
            return Rhythm()
        onset = _normalise(env, self.fps)
        period = _tempo_period(onset, self.fps)
        beats = _track_beats(onset, period)
        if len(beats) < 4:
            return Rhythm(round(60.0 * self.fps / period))
        times = beats / self.fps  # frame i is centred at i*hop - pad + n_fft/2 = i*hop + hop/2
        times = times + 0.5 * self.hop / self.sample_rate
        slope = float(np.polyfit(np.arange(times.size), times, 1)[0])
        tempo = float(round(60.0 / slope))
        strength = onset[beats]
        per_bar = _metre(strength)
        accent = _normalise(low, self.fps)[beats] + 0.5 * strength
        phase = int(np.argmax([accent[k::per_bar].mean() for k in range(per_bar)]))
        return Rhythm(
            tempo,
            [float(t) for t in times],
            [float(t) for t in times[phase::per_bar]],
            per_bar,
            (per_bar, 4),
        )


def _normalise(env: np.ndarray, fps: float) -> np.ndarray:
    """Subtract a moving average and half-wave rectify, then scale to unit deviation."""
    width = max(1, int(0.4 * fps))
    kernel = np.ones(width) / width
    local = np.convolve(env, kernel, mode="same")
    out = np.maximum(env - local, 0.0)
    std = out.std()
    return out / std if std > 0 else out


def _tempo_period(onset: np.ndarray, fps: float) -> float:
    """Beat period in frames: the lag whose multiples (1, 2, 4) autocorrelate best, weighted
    by a log-normal prior around 120 BPM."""
    n = onset.size
    spec = np.fft.rfft(onset - onset.mean(), 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    # Peaks fall between integer lags: widen them by one lag either side.
    acs = ac.copy()
    acs[1:] = np.maximum(acs[1:], ac[:-1])
    acs[:-1] = np.maximum(acs[:-1], ac[1:])
    lags = np.arange(60.0 * fps / _MAX_BPM, min(n / 4.0, 60.0 * fps / _MIN_BPM), 0.25)
    if lags.size == 0:
        return 60.0 * fps / DEFAULT_TEMPO

    def at(x: np.ndarray) -> np.ndarray:
        idx = np.rint(x).astype(int)
        return np.where(idx < n, acs[np.minimum(idx, n - 1)], 0.0)

    score = at(lags) + 0.5 * at(2 * lags) + 0.25 * at(4 * lags)
    bpm = 60.0 * fps / lags
    score = score * np.exp(-0.5 * (np.log2(bpm / DEFAULT_TEMPO) / 0.9) ** 2)
    return float(lags[int(np.argmax(score))])


def _track_beats(onset: np.ndarray, period: float, tightness: float = 100.0) -> np.ndarray:
    """Ellis's dynamic-programming beat tracker: frames of the beats."""
    n = onset.size
    score = onset.astype(float).copy()
    back = np.full(n, -1)
    lo, hi = int(round(period / 2)), int(round(2 * period))
    offsets = np.arange(-hi, -lo + 1)
    penalty = -tightness * np.log(-offsets / period) ** 2
    for t in range(lo, n):
        cand = t + offsets
        ok = cand >= 0
        if not ok.any():
            continue
        vals = score[cand[ok]] + penalty[ok]
        k = int(np.argmax(vals))
        if vals[k] > 0:
            score[t] += vals[k]
            back[t] = cand[ok][k]
    # End on the best beat in the last period, then follow the back-pointers.
    tail = max(0, n - int(round(period)))
    t = tail + int(np.argmax(score[tail:]))
    beats = []
    while t >= 0:
        beats.append(t)
        t = back[t]
    beats.reverse()
    return np.array(beats, dtype=int)


def _metre(strength: np.ndarray) -> int:
    """Beats per bar (3 or 4) from how beat strengths repeat."""
    if strength.size < 12:
        return 4
    s = strength - strength.mean()
    def ac(lag: int) -> float:
        return float(np.dot(s[:-lag], s[lag:]) / (s.size - lag))
    return 3 if ac(3) > 1.2 * max(ac(2), ac(4), 1e-9) else 4

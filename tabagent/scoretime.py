"""Score time: the constant-tempo time axis the tabs are written on, tied to the song by its beats.

A recording's beats drift around its tempo; a score's do not. `ScoreMap` maps audio seconds
to score seconds so that every tracked beat lands on a beat of the constant-tempo grid
(beat k of the song at `first + k * 60/tempo`), linearly in between and with slope 1 before
the first and after the last beat. Notes moved through it keep their place between the
beats the listener hears, so bars in tab.gp5/MusicXML/tab.txt are the song's bars; the
inverse gives, for any place in the score, when it sounds in the recording: the sync
points the page's player follows, and result.json's `score_beats`.

A gap of about k beat periods between two tracked beats (a beat the tracker missed)
counts as k beats, so one missed beat does not squeeze a bar.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from tabagent.notes import Note
from tabagent.rhythm import Rhythm


@dataclass(frozen=True)
class ScoreMap:
    """A monotonic piecewise-linear map between audio seconds and score seconds.

    Attributes:
        audio: knot times in the recording (the tracked beats), increasing.
        score: the same knots in score time, increasing.
    """

    audio: tuple[float, ...] = ()
    score: tuple[float, ...] = ()

    @classmethod
    def from_rhythm(cls, rhythm: Rhythm | None) -> ScoreMap:
        """The map of a rhythm's beats onto its constant tempo (identity without beats)."""
        if rhythm is None or len(rhythm.beats) < 2 or rhythm.tempo <= 0:
            return cls()
        period = 60.0 / float(rhythm.tempo)
        beats = [float(b) for b in rhythm.beats]
        score = [beats[0]]
        for a, b in zip(beats, beats[1:], strict=False):
            score.append(score[-1] + period * max(1, round((b - a) / period)))
        return cls(tuple(beats), tuple(score))

    @property
    def identity(self) -> bool:
        return len(self.audio) < 2

    def to_score(self, t: float | np.ndarray) -> float | np.ndarray:
        """Score seconds of audio time(s) `t`."""
        return self._map(t, self.audio, self.score)

    def to_audio(self, s: float | np.ndarray) -> float | np.ndarray:
        """Audio seconds of score time(s) `s`."""
        return self._map(s, self.score, self.audio)

    @staticmethod
    def _map(x: float | np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> float | np.ndarray:
        if len(xs) < 2:
            return x
        arr = np.asarray(x, dtype=float)
        out = np.interp(arr, xs, ys)
        out = np.where(arr < xs[0], ys[0] + (arr - xs[0]), out)
        out = np.where(arr > xs[-1], ys[-1] + (arr - xs[-1]), out)
        return float(out) if np.ndim(out) == 0 else out

    def notes(self, notes: Iterable[Note]) -> list[Note]:
        """Copies of `notes` with start and end in score time (never shorter than 1 ms)."""
        notes = list(notes)
        if self.identity or not notes:
            return [replace(n, pitch_bend=list(n.pitch_bend)) for n in notes]
        starts = np.asarray(self.to_score(np.array([n.start for n in notes])))
        ends = np.asarray(self.to_score(np.array([n.end for n in notes])))
        return [replace(n, start=float(a), end=float(max(b, a + 0.001)), pitch_bend=list(n.pitch_bend))
                for n, a, b in zip(notes, starts, ends, strict=True)]

    def rhythm(self, rhythm: Rhythm) -> Rhythm:
        """The rhythm in score time: the same tempo and metre, beats on the constant grid."""
        if self.identity:
            return rhythm
        return Rhythm(rhythm.tempo, list(self.score),
                      [float(self.to_score(d)) for d in rhythm.downbeats],
                      rhythm.beats_per_bar, tuple(rhythm.time_signature))  # type: ignore[arg-type]

"""Score time: tracked beats onto the constant-tempo grid the tabs are written on, and back."""

from __future__ import annotations

import numpy as np
import pytest

from tabagent.notes import Note
from tabagent.rhythm import Rhythm
from tabagent.scoretime import ScoreMap


def drifting(tempo: float = 100.0, beats: int = 40, drift: float = 0.03) -> Rhythm:
    """A performance that speeds up: each beat `drift` shorter than the last, in percent."""
    period = 60.0 / tempo
    times = [0.4]
    for k in range(1, beats):
        times.append(times[-1] + period * (1.0 - drift * (k / beats - 0.5)))
    return Rhythm(tempo, times, times[1::4], 4, (4, 4))


def test_every_beat_lands_on_the_grid_and_comes_back() -> None:
    rhythm = drifting()
    m = ScoreMap.from_rhythm(rhythm)
    period = 60.0 / rhythm.tempo
    score = np.asarray(m.to_score(np.array(rhythm.beats)))
    assert np.allclose(score, rhythm.beats[0] + period * np.arange(len(rhythm.beats)))
    t = np.linspace(-1.0, rhythm.beats[-1] + 2.0, 500)
    assert np.allclose(m.to_audio(m.to_score(t)), t)
    # Before the first and after the last beat time runs at its own pace.
    assert m.to_score(0.1) == pytest.approx(0.1)
    assert m.to_score(rhythm.beats[-1] + 1.0) == pytest.approx(float(score[-1]) + 1.0)
    # The drift is real: read at the constant tempo, beats mid-song would be this far off.
    assert np.max(np.abs(score - np.array(rhythm.beats))) > 0.05


def test_a_missed_beat_counts_as_two() -> None:
    period = 0.6
    beats = [0.5 + k * period for k in range(12)]
    del beats[5]
    m = ScoreMap.from_rhythm(Rhythm(100.0, beats, beats[::4], 4, (4, 4)))
    assert m.score[5] - m.score[4] == pytest.approx(2 * period)
    assert m.score[-1] == pytest.approx(0.5 + 11 * period)


def test_notes_and_rhythm_in_score_time() -> None:
    rhythm = drifting()
    m = ScoreMap.from_rhythm(rhythm)
    notes = [Note(60 + i % 5, b + 0.01, b + 0.3, 0.7, 2, i % 5) for i, b in enumerate(rhythm.beats)]
    moved = m.notes(notes)
    assert [(n.pitch, n.string, n.fret) for n in moved] == [(n.pitch, n.string, n.fret) for n in notes]
    assert all(b.end > b.start for b in moved)
    assert [n.start for n in moved] == sorted(n.start for n in moved)
    grid = m.rhythm(rhythm).grid(4)
    # On the grid every note starts on its beat's step (the 10 ms after it rounds away).
    steps = [grid.step_of(n.start) for n in moved]
    assert np.all(np.diff(steps) == grid.subdivision)
    assert notes[0].start == pytest.approx(rhythm.beats[0] + 0.01)   # the originals are untouched


def test_no_beats_is_the_identity() -> None:
    m = ScoreMap.from_rhythm(Rhythm())
    assert m.identity and m.to_score(3.2) == 3.2 and m.to_audio(1.5) == 1.5
    note = Note(60, 1.0, 2.0, 0.5, 0, 0)
    assert m.notes([note])[0].start == 1.0

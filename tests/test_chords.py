"""Chord names: pitch sets to names, and bar-by-bar names of a synthesised song with known chords."""

from __future__ import annotations

import pytest

from evalkit.examples import make_song
from tabagent.chords import at, chord_marks, name_chord


@pytest.mark.parametrize(("pitches", "bass", "name"), [
    ([60, 64, 67], 48, "C"),
    ([57, 60, 64], 45, "Am"),
    ([40, 47, 52], 40, "E5"),
    ([43, 47, 50, 55], 47, "G/B"),
    ([50, 54, 57, 60], 50, "D7"),
    ([52, 55, 59, 62], 52, "Em7"),
    ([50, 55, 57], 50, "Dsus4"),
    ([63, 67, 70], 51, "Eb"),
    ([64], 64, None),
    ([], None, None),
])
def test_names_of_pitch_sets(pitches: list[int], bass: int | None, name: str | None) -> None:
    weights: dict[int, float] = {}
    for p in pitches:
        weights[p % 12] = weights.get(p % 12, 0.0) + 1.0
    assert name_chord(weights, bass) == name


def test_a_passing_note_does_not_change_the_chord() -> None:
    weights = {0: 2.0, 4: 2.0, 7: 2.0, 2: 0.1}   # C major and a brief D
    assert name_chord(weights, 48) == "C"


def test_the_bars_of_a_song_get_its_chords() -> None:
    song = make_song(20.0, bpm=100.0, drums=False, seed=3)
    beat = 60.0 / song.bpm
    beats = [0.5 + k * beat for k in range(int((song.seconds - 0.5) / beat))]
    downbeats = beats[::4]
    notes = song.parts["guitar"] + song.parts["bass"]
    marks = chord_marks(notes, beats, downbeats, end=song.seconds)
    progression = ["Em", "C", "G", "D", "Am", "C", "G", "D"]
    named = [at(marks, d + beat) for d in downbeats[:-1]]
    truth = progression[: len(named)]
    # Each bar's chord (the triad's root and quality; inversions may add "/bass").
    right = sum(1 for got, want in zip(named, truth, strict=True) if got.split("/")[0] == want)
    assert right >= len(truth) - 1, list(zip(named, truth, strict=True))
    assert all(m.end > m.start for m in marks)
    assert [m.start for m in marks] == sorted(m.start for m in marks)

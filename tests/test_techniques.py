"""Technique detection from timing, loudness and Basic Pitch style pitch bends."""

from __future__ import annotations

import numpy as np

from tabagent import tuning as tunings
from tabagent.fingering import assign
from tabagent.notes import Note
from tabagent.techniques import detect

GUITAR = tunings.standard("guitar")
BASS = tunings.standard("bass")


def _frames(seconds: float) -> int:
    return max(4, int(seconds * 86))


def test_hammer_on_and_pull_off_from_legato_and_softer_attacks() -> None:
    notes = [
        Note(57, 0.0, 0.25, 0.9),   # A3 picked
        Note(59, 0.25, 0.5, 0.6),   # B3 hammered: no gap, softer
        Note(57, 0.5, 0.75, 0.5),   # back down: pull-off
        Note(60, 1.0, 1.25, 0.9),   # picked after a rest
        Note(62, 1.25, 1.5, 0.88),  # legato but as loud: picked
    ]
    out = detect(notes, GUITAR)
    assert [n.technique for n in out] == ["", "hammer_on", "pull_off", "", ""]


def test_slide_from_a_pitch_glide_and_wide_legato_jump() -> None:
    n = _frames(0.3)
    glide_out = [0.0] * (n - 4) + [0.0, 0.3, 0.7, 1.1]
    notes = [
        Note(57, 0.0, 0.3, 0.9, pitch_bend=glide_out),
        Note(59, 0.3, 0.6, 0.7, pitch_bend=[0.0] * n),
        Note(55, 1.0, 1.3, 0.9),
        Note(62, 1.3, 1.6, 0.6),   # seven semitones legato and softer: a slide, not a hammer
    ]
    out = detect(notes, GUITAR)
    assert out[1].techniques == ["slide"]
    assert out[3].techniques == ["slide"]


def test_bend_and_vibrato_from_pitch_bends() -> None:
    n = _frames(0.8)
    rise = np.concatenate([np.zeros(n // 5), np.linspace(0, 2.0, n // 5), np.full(n - 2 * (n // 5), 2.0)])
    wobble = 0.35 * np.sin(np.linspace(0, 8 * np.pi, n))
    flat = np.random.default_rng(0).normal(0, 0.02, n)
    notes = [
        Note(62, 0.0, 0.8, 0.9, pitch_bend=list(rise)),
        Note(64, 1.0, 1.8, 0.9, pitch_bend=list(wobble)),
        Note(67, 2.0, 2.8, 0.9, pitch_bend=list(flat)),
    ]
    out = detect(notes, GUITAR)
    assert [n.techniques for n in out] == [["bend"], ["vibrato"], []]


def test_no_bend_on_an_open_string() -> None:
    n = _frames(0.8)
    note = Note(64, 0.0, 0.8, 0.9, string=5, fret=0, pitch_bend=[0.0] * (n // 3) + [1.5] * (n - n // 3))
    assert detect([note], GUITAR)[0].techniques == []


def test_let_ring_in_an_arpeggio_but_not_on_bass() -> None:
    notes = [Note(48, 0.0, 2.0, 0.8), Note(52, 0.25, 2.0, 0.7), Note(55, 0.5, 2.0, 0.7), Note(60, 0.75, 1.0, 0.7)]
    out = detect([Note(n.pitch, n.start, n.end, n.velocity) for n in notes], GUITAR)
    assert "let_ring" in out[0].techniques and "let_ring" in out[1].techniques
    assert out[3].techniques == []
    assert all(n.techniques == [] for n in detect(notes, BASS))


def test_fingered_notes_must_share_the_string() -> None:
    picked = [Note(57, 0.0, 0.25, 0.9, string=2, fret=7), Note(59, 0.25, 0.5, 0.6, string=4, fret=0)]
    assert detect(picked, GUITAR)[1].technique == ""
    same = [Note(57, 0.0, 0.25, 0.9, string=2, fret=7), Note(59, 0.25, 0.5, 0.6, string=2, fret=9)]
    assert detect(same, GUITAR)[1].technique == "hammer_on"


def test_fingering_keeps_legato_pairs_on_one_string() -> None:
    # E4 -> F#4 hammered: alone F#4 would go to B7 or e2; the hammer keeps it with E4.
    notes = [Note(62, 0.0, 0.3, 0.9), Note(64, 0.3, 0.6, 0.9), Note(66, 0.6, 0.9, 0.6)]
    detect(notes, GUITAR)
    assert notes[2].techniques == ["hammer_on"]
    assign(notes, GUITAR)
    assert notes[2].string == notes[1].string
    detect(notes, GUITAR)  # detecting again on fingered notes keeps the mark
    assert notes[2].techniques == ["hammer_on"]

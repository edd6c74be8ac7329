"""String/fret agreement with human-like fingerings of idiomatic pieces, against a baseline."""

from __future__ import annotations

import pytest

from evalkit.fingering_corpus import BASS_PIECES, GUITAR_PIECES, PIECES, Piece, score_fingering
from tabagent.fingering import assign, lowest_fret


def _total(pieces: tuple[Piece, ...], engine) -> tuple[float, int]:
    matched = total = collisions = 0
    for piece in pieces:
        a = score_fingering(piece, engine)
        matched, total, collisions = matched + a.matched, total + a.total, collisions + a.collisions
    return matched / total, collisions


@pytest.mark.parametrize(
    ("pieces", "floor", "margin"), [(GUITAR_PIECES, 0.88, 0.15), (BASS_PIECES, 0.8, 0.0)], ids=["guitar", "bass"]
)
def test_agreement_beats_the_lowest_fret_baseline(pieces: tuple[Piece, ...], floor: float, margin: float) -> None:
    # Bass players mostly take the lowest fret already; guitarists play in position.
    engine, collisions = _total(pieces, assign)
    baseline, _ = _total(pieces, lowest_fret)
    assert collisions == 0
    assert engine >= floor
    assert engine >= baseline + margin


@pytest.mark.parametrize(
    "name",
    ["open_chords_strum", "funk_ninths", "csharp_minor_chords", "d_standard_riff",
     "e_minor_solo_box12", "bb_major_position5", "fsharp_minor_box2", "capo2_open_chords",
     "blues_shuffle_a", "em_pentatonic_open", "bass_drop_d"],
)
def test_idioms_a_player_expects(name: str) -> None:
    # Open chords, barre and moved shapes, solos in a box, capo shapes, open-key riffs.
    piece = next(p for p in PIECES if p.name == name)
    assert score_fingering(piece, assign).ratio >= 0.95


def test_five_string_bass_keeps_to_the_low_strings() -> None:
    # Real bass tabs (bench/human_tabs.py) keep a line on one low string more often than
    # the written piece does, so the engine may take A on the E string where it has open A.
    piece = next(p for p in PIECES if p.name == "bass_five_string")
    assert score_fingering(piece, assign).ratio >= 0.8


def test_every_tuning_family_is_covered() -> None:
    tunings = {(p.instrument, p.tuning) for p in PIECES}
    assert {("guitar", "drop_d"), ("guitar", "d_standard"), ("guitar", "open_g"), ("guitar", "dadgad"),
            ("guitar", "seven_standard"), ("bass", "five_standard"), ("bass", "six_standard")} <= tunings

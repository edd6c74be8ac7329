"""Evidence that survives other instruments, on synthesised band mixes through the DSP fallback and Basic Pitch.

* a bass line in D3-A3 under sustained organ and piano keeps its octave, and a low line
  stays low (the octave comes from onsets, partials and the line, not from the
  activation an octave below that keys fill in);
* chords keep their tones: power chords (root, fifth, octave) over a bass an octave
  below, drop-D chugs, open and barre chords strummed;
* without a guitar stem, keys do not become guitar; with an isolated stem the filter is off.

Thresholds are the measured values (in the comments) less a margin.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from band_fixtures import (
    BAR,
    BEAT,
    ORGAN,
    PIANO,
    Mix,
    bars,
    bass_line,
    chain_notes,
    drums,
    keys_parts,
    mix,
    scores,
)

from evalkit import synth
from tabagent import tuning as tunings
from tabagent.notes import Note
from transcriber_svc.bassline import BassLine, LineSettings
from transcriber_svc.decoder import RawNote
from transcriber_svc.postprocess import PostSettings

BARS = 6
KEYS_DB = -6.0       # organ and piano, each against the bass
STANDARD = tunings.standard("guitar").strings
DROP_D = tunings.named("guitar", "drop_d").strings


def _render(notes: list[Note], voice: synth.Voice, gain: float = 0.3) -> np.ndarray:
    return synth.render_notes(notes, voice, BARS * BAR + 1.0, gain=gain)


def _strum(shape: list[int], t: float, end: float, spread: float = 0.012, velocity: float = 0.8) -> list[Note]:
    return [Note(p, t + i * spread, end, velocity) for i, p in enumerate(shape)]


@functools.cache
def keys_mix(register: str) -> Mix:
    """A bass line (high: D3-A3, or low: around E1-E2) under sustained organ and piano, with drums."""
    bass = bass_line(BARS, 50 if register == "high" else 28)
    organ, piano = keys_parts(BARS)
    audio = mix([(_render(bass, synth.BASS, 0.45), 0.0, 0.0), (_render(organ, ORGAN), KEYS_DB, -0.3),
                 (_render(piano, PIANO), KEYS_DB, 0.3), (drums(BARS), -4.0, 0.1)])
    return Mix(audio, [], bass, [])


@pytest.mark.parametrize("register", ["high", "low"])
def test_bass_keeps_its_octave_under_sustained_keys(register: str) -> None:
    m = keys_mix(register)
    got = scores(m.bass, chain_notes(m.audio)["bass"])
    # Measured: high F1 0.67, 4 % octave errors (recall 0.58: Basic Pitch merges the
    # repeated roots); low F1 0.75, 0 %. The chain before this test: high 0.00 (a quarter
    # of the notes an octave low, the rest not found), low 0.74.
    assert got.octave_errors <= 0.1, got
    assert got.f1 >= (0.55 if register == "high" else 0.65), got


def _raw(pitch: int, start: float, end: float, amplitude: float, onset: float) -> RawNote:
    frames = int(round(start * 86.13))
    return RawNote(frames, frames + int((end - start) * 86.13), pitch, amplitude, [0], start, end, True,
                   onset=onset)


def test_bass_line_follows_its_register_over_a_louder_low_note() -> None:
    """A sustained low note (the keys' left hand), louder and struck with the line's first
    note an octave below it, does not pull the line down: the line stays where its notes are."""
    notes = []
    for bar in range(4):
        t0 = bar * 2.4
        notes.append(_raw(38, t0, t0 + 2.3, 0.8, 0.7))                   # organ, whole bar
        for i in range(4):
            notes.append(_raw(50 + (7 if i == 2 else 0), t0 + i * 0.6, t0 + i * 0.6 + 0.5, 0.6, 0.7))
    line = BassLine()
    released, _ = line.push(notes, float("inf"), ended=True)
    assert [n.pitch for n in released] == [50, 50, 57, 50] * 4


def test_bass_line_above_power_chords_is_not_their_root() -> None:
    """A bass line an octave above the guitar's power-chord roots (B3, A3 over B2-F#3 and
    A2-E3, all in the bass stem): the roots, louder and with their fifths above them, are
    not the bass, and the line's notes are not taken for their overtones."""
    notes = []
    for bar in range(4):
        t0 = bar * 2.4
        for i, root in enumerate((47, 47, 45, 45)):
            t = t0 + i * 0.6
            notes.append(_raw(root, t, t + 0.5, 0.9, 0.8))          # guitar: root ...
            notes.append(_raw(root + 7, t, t + 0.5, 0.6, 0.8))      # ... and fifth
            notes.append(_raw(root + 12, t, t + 0.5, 0.7, 0.7))     # the bass
    released, _ = BassLine().push(notes, float("inf"), ended=True)
    assert [n.pitch for n in released] == [59, 59, 57, 57] * 4
    # Without the chord-root rule the line took the guitar's roots.
    released, _ = BassLine(LineSettings(chord_cost=0.0)).push(notes, float("inf"), ended=True)
    assert [n.pitch for n in released] == [47, 47, 45, 45] * 4


def guitar_mix(guitar: list[Note], voice: synth.Voice, bass: list[Note], pan: float = 0.0) -> np.ndarray:
    return mix([(_render(guitar, voice), 0.0, pan), (_render(bass, synth.BASS, 0.45), -1.0, 0.0),
                (drums(BARS), -5.0, 0.1)])


def power_chords() -> Mix:
    """Root, fifth and octave on the low strings in eighths; the bass an octave below."""
    guitar, chord = [], []
    for t0, root, _ in bars(BARS):
        low = STANDARD[0] + (root - STANDARD[0]) % 12
        if low > 47:
            low -= 12
        for i in range(8):
            t = t0 + i * BEAT / 2
            shape = _strum([low, low + 7, low + 12], t, t + BEAT / 2 - 0.03, 0.006)
            guitar += shape
            chord += [True] * 3
    bass = [Note(n.pitch - 12, n.start, n.end, 0.9) for n in guitar[::3]]
    return Mix(guitar_mix(guitar, synth.OVERDRIVE_GUITAR, bass), guitar, bass, chord)


def drop_d_chugs() -> Mix:
    """Drop D: palm-muted low D sixteenths with open D5 power chords on the beats."""
    guitar, chord = [], []
    for t0, root, _ in bars(BARS):
        fret = (root - DROP_D[0]) % 12
        fret = fret if fret <= 7 else 0
        for i in range(16):
            t = t0 + i * BEAT / 4
            if i % 4 == 0:
                shape = _strum([DROP_D[s] + fret for s in range(3)], t, t + BEAT - 0.03, 0.004)
                guitar += shape
                chord += [True] * 3
            elif i % 2 == 0:
                guitar.append(Note(DROP_D[0], t, t + BEAT / 4 * 0.8, 0.7))
                chord.append(False)
    bass = [Note(DROP_D[0] + ((root - DROP_D[0]) % 12 if (root - DROP_D[0]) % 12 <= 7 else 0) - 12, t0 + i * BEAT,
                 t0 + (i + 0.9) * BEAT, 0.9) for t0, root, _ in bars(BARS) for i in range(4)]
    return Mix(guitar_mix(guitar, synth.OVERDRIVE_GUITAR, bass), guitar, bass, chord)


OPEN = {2: [50, 57, 62, 66], 9: [45, 52, 57, 61, 64], 7: [43, 47, 50, 55, 59, 67]}


def strums() -> Mix:
    """Open chords (D, A, G) and an E-shape barre (Bm at the 7th fret) strummed down and up."""
    guitar, chord = [], []
    for t0, root, _ in bars(BARS):
        shape = OPEN.get(root) or [47, 54, 59, 62, 66, 71]         # Bm barre, 7th fret
        for i, kind in enumerate("D.DU.UDU"):
            if kind == ".":
                continue
            t = t0 + i * BEAT / 2
            strings = shape if kind == "D" else shape[-3:][::-1]
            notes = _strum(strings, t, t + BEAT - 0.02, 0.01, 0.85 if kind == "D" else 0.65)
            guitar += notes
            chord += [True] * len(notes)
    bass = bass_line(BARS, 28)
    return Mix(guitar_mix(guitar, synth.GUITAR, bass), guitar, bass, chord)


@pytest.mark.parametrize(
    ("make", "tuning", "least"),
    [
        # Measured chord-tone recall (F1): power chords 0.77 (0.85), drop-D chugs 0.86
        # (0.84), strums 0.94 (0.92: the shared stem's lower frame threshold; 0.90 with
        # 0.3); the chain before this test: 0.58 (0.73), 0.67 (0.66), 0.81 (0.86).
        (power_chords, "standard", 0.65),
        (drop_d_chugs, "drop_d", 0.7),
        (strums, "standard", 0.8),
    ],
    ids=["power-chords", "drop-d-chugs", "open-and-barre-strums"],
)
def test_chords_keep_their_tones(make, tuning: str, least: float) -> None:  # type: ignore[no-untyped-def]
    m = make()
    got = scores(m.guitar, chain_notes(m.audio, tuning)["guitar"], m.chord_tones)
    assert got.chord_recall >= least, got
    assert got.f1 >= least - 0.05, got


@functools.cache
def keys_and_guitar() -> Mix:
    """A clean guitar arpeggio under sustained organ and comping piano, bass and drums."""
    guitar = []
    for t0, root, _ in bars(BARS):
        shape = OPEN.get(root) or [47, 54, 59, 62, 66, 71]
        order = shape + shape[-2:0:-1]
        guitar += [Note(order[i % len(order)], t0 + i * BEAT / 2, t0 + (i + 2) * BEAT / 2 - 0.02, 0.8)
                   for i in range(8)]
    organ, piano = keys_parts(BARS)
    bass = bass_line(BARS, 28)
    audio = mix([(_render(guitar, synth.GUITAR), 0.0, -0.3), (_render(organ, ORGAN), -1.0, 0.2),
                 (_render(piano, PIANO), -1.0, 0.4), (_render(bass, synth.BASS, 0.45), -1.0, 0.0),
                 (drums(BARS), -5.0, 0.1)])
    return Mix(audio, guitar, bass, [False] * len(guitar))


def test_keys_do_not_become_guitar() -> None:
    m = keys_and_guitar()
    got = scores(m.guitar, chain_notes(m.audio)["guitar"])
    # The same mix as if the stem held the guitar alone (no evidence filter).
    unfiltered = scores(m.guitar, chain_notes(m.audio, isolated=True)["guitar"])
    # Measured: 97 notes found for 48 played, precision 0.45, F1 0.61; with an isolated
    # stem's settings (no evidence filter, a higher amplitude floor, Basic Pitch's frame
    # threshold) 99, 0.43, 0.59. What stays is mostly the piano's comping (struck and decaying like a
    # string, in the guitar's register, panned elsewhere). The chain before this test
    # found 83 (precision 0.49, F1 0.63): its stricter amplitude floor also dropped the
    # quiet strings of strummed chords (docs/ACCURACY.md).
    assert got.precision > unfiltered.precision and got.f1 >= unfiltered.f1, (got, unfiltered)
    assert got.found <= 2.3 * len(m.guitar), got
    assert got.precision >= 0.4 and got.f1 >= 0.5, got


def test_an_isolated_guitar_stem_is_trusted() -> None:
    guitar = tunings.standard("guitar")
    isolated = PostSettings.for_instrument("guitar", guitar, isolated=True)
    shared = PostSettings.for_instrument("guitar", guitar)
    assert isolated.min_onset == 0.0 and isolated.high_min_onset == 0.0
    assert shared.min_onset > 0.0 and shared.high_min_onset > shared.min_onset


def test_a_shared_guitar_stem_decodes_with_a_lower_frame_threshold() -> None:
    """A guitar sharing its stem (quieter there) keeps a note's frames down to 0.2; an
    isolated stem and the bass keep Basic Pitch's 0.3; a client's own value wins."""
    from tabagent.v1 import transcriber_pb2
    from transcriber_svc.request import parse_config

    def frame(**fields: object) -> float:
        return parse_config(transcriber_pb2.TranscribeConfig(**fields), 20.0).decoder.frame_threshold

    assert frame(instrument="guitar") == 0.2
    assert frame(instrument="guitar", isolated_stem=True) == 0.3
    assert frame(instrument="bass") == 0.3
    assert frame(instrument="guitar", frame_threshold=0.35) == pytest.approx(0.35)

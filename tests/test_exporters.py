"""Every export read back gives the same notes, tuning and tempo."""

from __future__ import annotations

from pathlib import Path

import mido
import pretty_midi
import pytest

from evalkit.fingering_corpus import by_name
from tabagent import tuning as tunings
from tabagent.exporters import (
    parse_ascii_tab,
    read_gp5,
    read_musicxml,
    write_ascii_tab,
    write_gp5,
    write_midi,
    write_musicxml,
)
from tabagent.fingering import assign
from tabagent.notes import Note
from tabagent.rhythm import Rhythm

TEMPO = 100.0
STEP = 60.0 / TEMPO / 4  # sixteenth notes


def _parts() -> dict[str, tuple[tunings.Tuning, list[Note]]]:
    """A lead with techniques, a capo'd rhythm part on a 7-string, and a 5-string bass."""
    lead = by_name("pentatonic_box5")
    lead_notes = lead.notes()
    lead_notes[3].technique = "hammer_on"   # D5 -> A7 on the A string
    lead_notes[7].technique = "slide"       # G5 -> G7
    lead_notes[20].technique = "vibrato"
    bass = by_name("bass_five_string")
    seven = tunings.named("guitar", "seven_standard", capo=3)
    chords = [Note(p + 3, 0.6 * k, 0.6 * k + 0.5) for k in range(6) for p in (40, 47, 52, 55)]
    assign(chords, seven)
    shift = [Note(n.pitch, n.start + 0.15, n.end + 0.15, n.velocity, n.string, n.fret, n.technique)
             for n in lead_notes]
    return {
        "lead": (lead.tuning_obj(), shift),
        "rhythm": (seven, chords),
        "bass": (bass.tuning_obj(), bass.notes()),
    }


def _rhythm() -> Rhythm:
    # The first downbeat 0.45 s in: a three-sixteenth anacrusis.
    return Rhythm.constant(TEMPO, 12.0, first_downbeat=0.45)


def _same(written: list[Note], read: list[Note], tol: float = STEP / 2 + 1e-6) -> None:
    key = lambda n: (round(n.start / STEP), n.string, n.pitch)  # noqa: E731
    a, b = sorted(written, key=key), sorted(read, key=key)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.pitch, x.string, x.fret) == (y.pitch, y.string, y.fret)
        assert abs(x.start - y.start) <= tol


def test_ascii_tab_round_trip(tmp_path: Path) -> None:
    parts = _parts()
    path = tmp_path / "tab.txt"
    text = write_ascii_tab(parts, _rhythm(), path, title="Round trip")
    assert path.read_text() == text
    assert "E4|" in text and "B1|" in text and "capo 3" in text and "Tempo 100 BPM, 4/4" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    read = parse_ascii_tab(text)
    assert [len(p.names) for p in read] == [6, 7, 5]
    for part, (tuning, notes) in zip(read, parts.values(), strict=True):
        assert part.tempo == TEMPO and part.capo == tuning.capo
        assert [tunings.note_name_to_midi(n) for n in part.names] == list(tuning.strings)
        _same(notes, part.notes)
    lead = read[0].notes
    assert lead[3].techniques == ["hammer_on"] and lead[7].techniques == ["slide"]
    assert "vibrato" in lead[20].techniques


def test_ascii_tab_reads_tab_site_text() -> None:
    text = """
e|-------0---|
B|-----1-----|
G|---0-------|
D|-----------|
A|-3---------|
E|-----------|
"""
    (part,) = parse_ascii_tab(text, tunings.standard("guitar"), tempo=60, steps_per_beat=2, step_chars=2)
    assert [(n.pitch, n.string, n.fret) for n in part.notes] == [(48, 1, 3), (55, 3, 0), (60, 4, 1), (64, 5, 0)]
    assert [n.start for n in part.notes] == [0.0, 0.5, 1.0, 1.5]


def test_a_long_mark_overflows_into_empty_steps_instead_of_widening_the_tab() -> None:
    # One bend with vibrato ("12b14~") among sixteenths: the steps stay three characters
    # (two-digit frets), the mark runs on into the empty steps of its string, and the
    # tab reads back note for note. A mark with no room before the next note on its
    # string widens the steps just enough.
    guitar = tunings.standard("guitar")
    notes = [Note(64 + k % 3, k * STEP, (k + 1) * STEP, string=5, fret=k % 3) for k in range(8)]
    bend = Note(71, 8 * STEP, 12 * STEP, string=4, fret=12, technique="bend,vibrato", pitch_bend=[0.0, 2.0])
    notes += [bend, Note(59, 9 * STEP, 10 * STEP, string=3, fret=4), Note(72, 12 * STEP, 13 * STEP, string=4, fret=13)]
    text = write_ascii_tab({"lead": (guitar, notes)}, Rhythm.constant(TEMPO, 4.0))
    assert "3 characters per step" in text and "12b14~-" in text
    (read,) = parse_ascii_tab(text)
    key = lambda n: (round(n.start / STEP), n.string)  # noqa: E731
    assert [(key(n), n.fret) for n in sorted(read.notes, key=key)] == [(key(n), n.fret) for n in sorted(notes, key=key)]
    assert "bend" in next(n for n in read.notes if n.fret == 12).techniques
    crowded = [bend, Note(72, 9 * STEP, 10 * STEP, string=4, fret=13)]
    text = write_ascii_tab({"lead": (guitar, crowded)}, Rhythm.constant(TEMPO, 4.0))
    assert "7 characters per step" in text
    assert [n.fret for n in parse_ascii_tab(text)[0].notes] == [12, 13]


def test_gp5_round_trip(tmp_path: Path) -> None:
    parts = _parts()
    path = tmp_path / "tab.gp5"
    write_gp5(parts, _rhythm(), path, title="Round trip")
    song = read_gp5(path)
    assert song["title"] == "Round trip" and song["tempo"] == 100
    assert list(song["parts"]) == ["lead", "rhythm", "bass"]
    for name, (tuning, notes) in parts.items():
        part = song["parts"][name]
        assert part["strings"] == list(tuning.strings) and part["capo"] == tuning.capo
        assert part["program"] == (33 if tuning.instrument == "bass" else 25)
        _same(notes, part["notes"])
    lead = song["parts"]["lead"]["notes"]
    assert lead[3].techniques == ["hammer_on"] and lead[7].techniques == ["slide"]
    assert lead[20].techniques == ["vibrato"]


def test_gp5_with_pyguitarpro_directly(tmp_path: Path) -> None:
    import guitarpro

    path = tmp_path / "tab.gp5"
    notes = [Note(62, 0.0, 0.6, 0.9, 3, 7, "bend", pitch_bend=[0.0, 0.0, 1.0, 2.0, 2.0])]
    write_gp5({"guitar": (tunings.named("guitar", "drop_d"), notes)}, Rhythm.constant(TEMPO, 2.0), path)
    song = guitarpro.parse(str(path))
    (track,) = song.tracks
    assert [s.value for s in track.strings] == [64, 59, 55, 50, 45, 38]
    beat = track.measures[0].voices[0].beats[0]
    (note,) = beat.notes
    # A full bend (2 semitones): Guitar Pro counts bend points in quarter tones, the
    # bend's value in hundredths of a tone (MuseScore shows it as "full").
    assert (note.string, note.value) == (3, 7) and note.effect.bend.value == 100
    assert max(p.value for p in note.effect.bend.points) == 4
    assert sum(m.header.timeSignature.numerator for m in track.measures) >= 4


def test_musicxml_round_trip_with_music21(tmp_path: Path) -> None:
    import music21

    parts = _parts()
    path = tmp_path / "tab.musicxml"
    write_musicxml(parts, _rhythm(), path, title="Round trip")
    score = read_musicxml(path)
    assert score["tempo"] == TEMPO
    for name, (tuning, notes) in parts.items():
        part = score["parts"][name]
        assert part["strings"] == list(tuning.strings) and part["capo"] == tuning.capo
        _same(notes, part["notes"])
    parsed = music21.converter.parse(str(path))
    assert len(parsed.parts) == 3
    assert isinstance(parsed.parts[0].flatten().getElementsByClass("Clef")[0], music21.clef.TabClef)
    xml = path.read_text()
    assert "<staff-lines>7</staff-lines>" in xml and "<capo>3</capo>" in xml
    assert '<hammer-on type="start"' in xml and '<hammer-on type="stop"' in xml
    assert '<slide type="start"' in xml and '<slide type="stop"' in xml


def test_midi_round_trip(tmp_path: Path) -> None:
    parts = _parts()
    path = tmp_path / "notes.mid"
    write_midi(parts, _rhythm(), path)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert [i.name for i in midi.instruments] == ["lead", "rhythm", "bass"]
    assert [i.program for i in midi.instruments] == [25, 25, 33]
    assert not any(i.is_drum for i in midi.instruments)
    assert midi.get_tempo_changes()[1][0] == pytest.approx(TEMPO)
    for inst, (_, notes) in zip(midi.instruments, parts.values(), strict=True):
        got = sorted((round(n.start, 3), n.pitch) for n in inst.notes)
        want = sorted((round(n.start, 3), n.pitch) for n in notes)
        assert len(got) == len(want)
        assert all(g[1] == w[1] and abs(g[0] - w[0]) < 0.005 for g, w in zip(got, want, strict=True))
    raw = mido.MidiFile(str(path))
    assert raw.type == 1 and len(raw.tracks) == 4
    assert mido.tempo2bpm(next(m.tempo for m in raw.tracks[0] if m.type == "set_tempo")) == pytest.approx(TEMPO)


def test_empty_part_and_unfingered_notes(tmp_path: Path) -> None:
    guitar = tunings.standard("guitar")
    parts = {"guitar": (guitar, [Note(40, 0.0, 0.5)]), "bass": (tunings.standard("bass"), [])}
    write_gp5(parts, Rhythm(), tmp_path / "a.gp5")
    write_musicxml(parts, Rhythm(), tmp_path / "a.musicxml")
    text = write_ascii_tab(parts, Rhythm())
    assert read_gp5(tmp_path / "a.gp5")["parts"]["guitar"]["notes"] == []
    assert read_musicxml(tmp_path / "a.musicxml")["parts"]["bass"]["notes"] == []
    assert "G2|" in text


def test_fast_notes_use_a_finer_grid_and_none_is_lost(tmp_path: Path) -> None:
    guitar = tunings.standard("guitar")
    thirty_second = 60.0 / TEMPO / 8
    notes = [Note(64 + (k % 3), k * thirty_second, (k + 1) * thirty_second, string=5, fret=k % 3)
             for k in range(16)]
    parts = {"lead": (guitar, notes)}
    write_gp5(parts, Rhythm.constant(TEMPO, 2.0), tmp_path / "fast.gp5")
    write_musicxml(parts, Rhythm.constant(TEMPO, 2.0), tmp_path / "fast.musicxml")
    for read in (read_gp5(tmp_path / "fast.gp5")["parts"]["lead"]["notes"],
                 read_musicxml(tmp_path / "fast.musicxml")["parts"]["lead"]["notes"],
                 parse_ascii_tab(write_ascii_tab(parts, Rhythm.constant(TEMPO, 2.0)))[0].notes):
        assert [(n.pitch, n.fret) for n in read] == [(n.pitch, n.fret) for n in notes]
        assert all(abs(a.start - b.start) < 1e-6 for a, b in zip(read, notes, strict=True))


def test_musicxml_of_an_hour_long_song_is_written_in_bounded_memory(tmp_path: Path) -> None:
    """The score is written bar by bar: an hour of notes takes no more memory to write than
    the notes' layout itself (the whole element tree of it took 31 MiB)."""
    import tracemalloc

    guitar = [Note(52 + (k * 5) % 17, 0.25 * k, 0.25 * k + 0.2, 0.7) for k in range(3600 * 4)]
    bass = [Note(33 + (k * 7) % 12, 0.5 * k, 0.5 * k + 0.4, 0.7) for k in range(3600 * 2)]
    parts = {"guitar": (tunings.standard("guitar"), guitar), "bass": (tunings.standard("bass"), bass)}
    for tuning, notes in parts.values():
        for n in notes:     # fingered directly: the engine is not what is measured here
            n.string = max(i for i, s in enumerate(tuning.strings) if s <= n.pitch)
            n.fret = n.pitch - tuning.strings[n.string]
    tracemalloc.start()
    try:
        write_musicxml(parts, Rhythm.constant(120.0, 3600.0), tmp_path / "hour.musicxml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "hour.musicxml").stat().st_size > 5_000_000
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"

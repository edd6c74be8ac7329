"""The fingering engine against human-made tabs: the Guitar Pro reader, retuning, and real excerpts when cached."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from evalkit import tabcorpus
from evalkit.tabcorpus import HumanTrack
from tabagent import tuning as tunings
from tabagent.fingering import assign, lowest_fret
from tabagent.notes import Note

gp = pytest.importorskip("guitarpro")
models = gp.models

CACHE = Path(os.environ.get("TABAGENT_HUMAN_TABS", Path.home() / ".cache" / "tabagent" / "human-tabs"))


def _track(song, number: int, name: str, program: int, strings: list[int], offset: int = 0, drums: bool = False):
    track = models.Track(
        song, number=number, name=name, offset=offset, isPercussionTrack=drums,
        strings=[models.GuitarString(len(strings) - i, p) for i, p in enumerate(strings)][::-1],
        channel=models.MidiChannel(channel=9 if drums else 2 * number, effectChannel=2 * number + 1,
                                   instrument=program),
    )
    track.measures = []
    return track


def _write_song(path: Path) -> None:
    """One bar of 4/4: a guitar (capo 2) with a tie, a dead note and a chord; a bass; a flute; drums."""
    song = models.Song(title="test", tempo=120)
    header = models.MeasureHeader(number=1, start=960, timeSignature=models.TimeSignature(4, models.Duration(value=4)))
    song.measureHeaders = [header]
    # beats: (GP string number 1 = highest, fret, type) per quarter note
    guitar_beats = [
        [(1, 3, models.NoteType.normal)],
        [(1, 3, models.NoteType.tie)],
        [(6, 0, models.NoteType.dead)],
        [(6, 3, models.NoteType.normal), (5, 5, models.NoteType.normal)],
    ]
    bass_beats = [[(4, 0, models.NoteType.normal)], [(3, 2, models.NoteType.normal)],
                  [(2, 5, models.NoteType.normal)], [(1, 7, models.NoteType.normal)]]
    parts = [
        (_track(song, 1, "Lead", 29, [40, 45, 50, 55, 59, 64], offset=2), guitar_beats),
        (_track(song, 2, "Bass", 33, [28, 33, 38, 43]), bass_beats),
        (_track(song, 3, "Flute", 73, [40, 45, 50, 55, 59, 64]), bass_beats),
        (_track(song, 4, "Drums", 0, [0] * 6, drums=True), bass_beats),
    ]
    song.tracks = []
    for track, beats in parts:
        measure = models.Measure(track, header)
        voice = measure.voices[0]
        for notes in beats:
            beat = models.Beat(voice, duration=models.Duration(value=4), status=models.BeatStatus.normal)
            for string, fret, kind in notes:
                beat.notes.append(models.Note(beat, value=fret, string=string, type=kind))
            voice.beats.append(beat)
        track.measures = [measure]
        song.tracks.append(track)
    gp.write(song, str(path), version=(5, 1, 0))


def test_read_tracks_keeps_guitar_and_bass_with_the_human_fingering(tmp_path: Path) -> None:
    path = tmp_path / "song.gp5"
    _write_song(path)
    tracks = tabcorpus.read_tracks(path, min_notes=1)
    assert [(t.name, t.instrument) for t in tracks] == [("Lead", "guitar"), ("Bass", "bass")]
    lead, bass = tracks
    assert lead.tuning.strings == (40, 45, 50, 55, 59, 64) and lead.tuning.capo == 2
    # The tie lengthens the first note to two beats; the dead note has no pitch.
    first = lead.notes[0]
    assert (first.pitch, first.string, first.fret) == (64 + 2 + 3, 5, 3)
    assert first.start == pytest.approx(0.0) and first.end == pytest.approx(1.0)
    assert [(n.pitch, n.string, n.fret) for n in lead.notes[1:]] == [(40 + 2 + 3, 0, 3), (45 + 2 + 5, 1, 5)]
    assert lead.notes[1].start == pytest.approx(1.5)
    assert [(n.string, n.fret) for n in bass.notes] == [(0, 0), (1, 2), (2, 5), (3, 7)]
    assert [n.pitch for n in bass.notes] == [28, 35, 43, 50]


def _human(strings: tuple[int, ...], instrument: str, placed: list[tuple[float, int, int]]) -> HumanTrack:
    tuning = tunings.Tuning(strings, 0, 24, tunings._name_of(instrument, strings), instrument)
    notes = tuple(Note(strings[s] + f, t, t + 0.25, string=s, fret=f) for t, s, f in placed)
    return HumanTrack("song", "part", instrument, tuning, notes)


def test_retuned_keeps_the_human_strings() -> None:
    track = _human(tunings.TUNINGS["guitar"]["standard"], "guitar", [(0.0, 0, 3), (0.5, 1, 5), (1.0, 5, 0)])
    drop = tabcorpus.retuned(track, tunings.TUNINGS["guitar"]["drop_d"], "drop_d")
    assert drop is not None and drop.tuning.name == "drop_d"
    # Drop D: same pitches, the low string's frets two higher.
    assert [(n.pitch, n.string, n.fret) for n in drop.notes] == [(43, 0, 5), (50, 1, 5), (64, 5, 0)]
    # D standard: every string a tone down, so the same frets sound a tone lower.
    d_std = tabcorpus.retuned(track, tunings.TUNINGS["guitar"]["d_standard"], "d_standard")
    assert d_std is not None
    assert [(n.pitch, n.string, n.fret) for n in d_std.notes] == [(41, 0, 3), (48, 1, 5), (62, 5, 0)]
    # 7-string: a low B below, every note where it was.
    seven = tabcorpus.retuned(track, tunings.TUNINGS["guitar"]["seven_standard"], "seven")
    assert seven is not None
    assert [(n.pitch, n.string, n.fret) for n in seven.notes] == [(43, 1, 3), (50, 2, 5), (64, 6, 0)]
    # Raising the low string would need a negative fret under the open note.
    low_open = replace(track, notes=(Note(40, 0.0, 0.5, string=0, fret=0),))
    assert tabcorpus.retuned(low_open, (41, 45, 50, 55, 59, 64), "raised") is None
    bass = _human(tunings.TUNINGS["bass"]["standard"], "bass", [(0.0, 0, 0), (0.5, 1, 2)])
    five = tabcorpus.retuned(bass, tunings.TUNINGS["bass"]["five_standard"], "five")
    assert five is not None and [(n.string, n.fret) for n in five.notes] == [(1, 0), (2, 2)]


def test_score_track_and_duplicates() -> None:
    # An open-position line every fingering agrees on, and the same track twice.
    track = _human(tunings.TUNINGS["guitar"]["standard"], "guitar", [(0.0, 0, 0), (0.5, 0, 3), (1.0, 1, 2)])
    score = tabcorpus.score_track(track, lowest_fret)
    assert (score.matched, score.total, score.collisions) == (3, 3, 0)
    assert len(tabcorpus.unique_tracks([track, replace(track, name="copy")])) == 1
    assert tabcorpus.instrument_of(107, "Guitar (koto)", (40,)) == "guitar"
    assert tabcorpus.instrument_of(73, "Flute", (40,)) is None


# Real excerpts: songs the weights were never tuned on (see bench/human_tabs.py).
EXCERPTS = (
    ("Deep Purple - Love Child", "Tommy Bolin"),
    ("Deep Purple - Love Child", "Glenn Hughes"),
    ("CarpeDiem - Ink", "Guitar"),
    ("CarpeDiem - Ink", "Bass"),
    ("maroon5_payphone", "Track 1"),
    ("ed_sheeran_supermarket_flowers", "Steel Guitar"),
)
EXCERPT_NOTES = 300


def _cached_excerpts() -> list[HumanTrack]:
    files = CACHE / "files"
    if not files.is_dir():
        return []
    wanted = {song for song, _ in EXCERPTS}
    tracks: dict[tuple[str, str], HumanTrack] = {}
    for path in sorted(files.rglob("*.gp*")):
        if path.stem in wanted and path.suffix in tabcorpus.GP_SUFFIXES:
            for track in tabcorpus.read_tracks(path):
                tracks.setdefault((track.song, track.name), track)
    found = [tracks[key] for key in EXCERPTS if key in tracks]
    return [replace(t, notes=t.notes[:EXCERPT_NOTES]) for t in found]


@pytest.fixture(scope="module")
def excerpts() -> list[HumanTrack]:
    found = _cached_excerpts()
    if len(found) < len(EXCERPTS):
        pytest.skip(f"human tabs not cached in {CACHE} (run bench/human_tabs.py once)")
    return found


def test_human_excerpts_agree_with_the_tabber(excerpts: list[HumanTrack]) -> None:
    engine = [tabcorpus.score_track(t, assign) for t in excerpts]
    baseline = [tabcorpus.score_track(t, lowest_fret) for t in excerpts]
    matched, total = sum(s.matched for s in engine), sum(s.total for s in engine)
    assert sum(s.collisions for s in engine) == 0
    assert matched / total >= 0.75
    assert matched > sum(s.matched for s in baseline)
    for track, s in zip(excerpts, engine, strict=True):
        assert s.ratio >= 0.5, track.key


def test_human_excerpts_in_other_tunings(excerpts: list[HumanTrack]) -> None:
    # The same excerpts in drop D / 7-string and drop D / 5-string bass: no collisions and
    # about the agreement of the original tuning.
    for track in excerpts:
        names = ("drop_d", "seven_standard") if track.instrument == "guitar" else ("drop_d", "five_standard")
        if track.tuning.name != "standard":
            continue
        base = tabcorpus.score_track(track, assign).ratio
        for name in names:
            moved = tabcorpus.retuned(track, tunings.TUNINGS[track.instrument][name], name)
            assert moved is not None
            s = tabcorpus.score_track(moved, assign)
            assert s.collisions == 0
            assert s.ratio >= base - 0.2, (track.key, name)

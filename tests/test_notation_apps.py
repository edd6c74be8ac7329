"""Every export opened in the programs guitarists use: MuseScore 3 and TuxGuitar, headless.

A song with a pickup, a lead line with techniques, a capo'd rhythm part of chords and a
bass is written as GP5, MusicXML and MIDI. Then:

* TuxGuitar's own GP5 reader (its jars, driven by tests/notation/TabCheck.java; no GUI)
  loads the GP5: the tracks, tunings, capo, a 4/4 first bar marked "Pickup", every
  (string, fret) written, the effects, the chord names and at most three dynamics.
* MuseScore 3 (`mscore3`, QT_QPA_PLATFORM=offscreen) converts each file to its own
  format (.mscx, which keeps string and fret per note) and to PDF: every conversion
  succeeds; the GP5 keeps every (string, fret); the MusicXML gives one tempo mark, a
  pickup measure of the right length, the chord names and the tuning words; the MIDI
  gives one part per track.

The programs come from `scripts/install.sh --notation` (Debian's musescore3, tuxguitar
and a JDK for the single-file Java program); without them the test skips and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tabagent import tuning as tunings
from tabagent.exporters import write_gp5, write_midi, write_musicxml
from tabagent.exporters.chords import chord_labels
from tabagent.notes import Note
from tabagent.rhythm import Rhythm

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
TUX_HOME = Path("/usr/share/tuxguitar")
TUX_JARS = [TUX_HOME / "lib" / "tuxguitar-lib.jar", TUX_HOME / "plugins" / "tuxguitar-gtp.jar"]
MSCORE = shutil.which("mscore3") or shutil.which("musescore3")
TEMPO = 100.0
BEAT = 60.0 / TEMPO


def _song() -> tuple[dict[str, tuple[tunings.Tuning, list[Note]]], Rhythm]:
    """A pickup of one beat, then a lead with techniques, strummed chords (capo 2) and a bass."""
    t0 = BEAT  # the first downbeat: one beat of pickup before it
    std = tunings.standard("guitar")
    lead = [Note(64, 0.0, 0.5 * BEAT, 0.7, 4, 5), Note(67, 0.5 * BEAT, BEAT, 0.7, 4, 8)]
    line = [(3, 7, ""), (3, 9, "hammer_on"), (3, 7, "pull_off"), (4, 5, ""), (4, 8, "slide"), (5, 5, ""),
            (5, 8, "bend"), (4, 7, "vibrato")]
    for k, (string, fret, technique) in enumerate(line):
        start = t0 + k * 0.5 * BEAT
        note = Note(std.strings[string] + fret, start, start + 0.5 * BEAT, 0.6 + 0.04 * k, string, fret, technique)
        if technique == "bend":
            note.pitch_bend = [0.0, 2.0]
        lead.append(note)
    capo = tunings.named("guitar", "standard", capo=2)
    shapes = [[(1, 3), (2, 2), (3, 0), (4, 1), (5, 0)],          # C shape (sounds D)
              [(0, 3), (1, 2), (2, 0), (3, 0), (4, 0), (5, 3)],  # G shape (sounds A)
              [(1, 0), (2, 2), (3, 2), (4, 1), (5, 0)]]          # Am shape (sounds Bm)
    rhythm_notes = []
    for bar, shape in enumerate(shapes):
        for beat in range(4):
            start = t0 + (4 * bar + beat) * BEAT
            velocity = 0.9 if bar == 2 else 0.45
            rhythm_notes += [Note(capo.sounding[s] + f, start, start + BEAT, velocity, s, f) for s, f in shape]
    bass = tunings.standard("bass")
    bass_notes = [Note(bass.strings[1] + 5, t0 + k * 2 * BEAT, t0 + (k * 2 + 1) * BEAT, 0.8, 1, 5) for k in range(6)]
    parts = {"lead": (std, lead), "rhythm": (capo, rhythm_notes), "bass": (bass, bass_notes)}
    return parts, Rhythm.constant(TEMPO, t0 + 13 * BEAT, first_downbeat=t0)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("notation")
    parts, rhythm = _song()
    paths = {"gp5": out / "tab.gp5", "musicxml": out / "tab.musicxml", "mid": out / "notes.mid"}
    write_gp5(parts, rhythm, paths["gp5"], title="Notation check")
    write_musicxml(parts, rhythm, paths["musicxml"], title="Notation check")
    write_midi(parts, rhythm, paths["mid"])
    return paths


def _written(part: str) -> Counter[tuple[int, int]]:
    """(string counted from the highest = 1, fret) of every note written in `part`."""
    tuning, notes = _song()[0][part]
    return Counter((len(tuning.strings) - n.string, n.fret) for n in notes)


# -- TuxGuitar -------------------------------------------------------------------------
def _tuxguitar(path: Path) -> list[list[str]]:
    java = shutil.which("java")
    if java is None or not all(j.is_file() for j in TUX_JARS):
        pytest.skip("TuxGuitar or Java missing: scripts/install.sh --notation installs tuxguitar and a JDK")
    cp = os.pathsep.join(str(j) for j in TUX_JARS)
    proc = subprocess.run([java, "-cp", cp, str(HERE / "notation" / "TabCheck.java"), str(path)],
                          capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 and "jdk.compiler" in proc.stderr:
        pytest.skip("this Java cannot run a source file (no JDK): scripts/install.sh --notation installs one")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [line.split() for line in proc.stdout.splitlines()]


def test_tuxguitar_loads_the_gp5_with_our_frets(exports: dict[str, Path]) -> None:
    lines = _tuxguitar(exports["gp5"])
    song = next(line for line in lines if line[0] == "song")
    assert song[1:3] == [str(int(TEMPO)), "3"]
    measures = [line for line in lines if line[0] == "measure"]
    assert all(m[2] == "4/4" for m in measures)          # no 1/4 bar: the pickup is padded
    assert measures[0][3] == "Pickup"
    tracks = {line[1]: line for line in lines if line[0] == "track"}
    names = {"1": "lead", "2": "rhythm", "3": "bass"}
    assert {k: v[2] for k, v in tracks.items()} == names
    assert tracks["2"][3] == "offset=2" and tracks["1"][3] == "offset=0"
    assert tracks["1"][4] == "strings=64,59,55,50,45,40" and tracks["3"][4] == "strings=43,38,33,28"
    notes = [line for line in lines if line[0] == "note"]
    for number, part in names.items():
        seen = Counter((int(n[4]), int(n[5])) for n in notes if n[1] == number)
        assert seen == _written(part), part
        velocities = {n[6] for n in notes if n[1] == number}
        assert len(velocities) <= 3, (part, velocities)   # a few dynamics, not one per note
    lead_fx = Counter(n[7] for n in notes if n[1] == "1")
    assert lead_fx["h"] == 2 and lead_fx["s"] == 1 and lead_fx["b"] == 1 and lead_fx["v"] == 1
    chords = [n[8] for n in notes if n[1] == "2" and n[8] != "-"]
    assert {"C", "G", "Am"} <= set(chords)
    assert len({n[6] for n in notes if n[1] == "2"}) == 2   # the loud last bar changes the dynamic


# -- MuseScore 3 -----------------------------------------------------------------------
def _mscore(src: Path, suffix: str) -> Path:
    if MSCORE is None:
        pytest.skip("MuseScore 3 missing: scripts/install.sh --notation installs musescore3")
    out = src.with_name(f"{src.name}.{suffix}")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(src.parent)}
    proc = subprocess.run([MSCORE, "-o", str(out), str(src)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and out.is_file(), (proc.stdout + proc.stderr)[-3000:]
    return out


def _main_score(mscx: Path) -> ET.Element:
    root = ET.parse(mscx).getroot()
    score = root.find("Score")
    assert score is not None
    return score


def _count(score: ET.Element, tag: str) -> list[ET.Element]:
    """`tag` elements in the score's own staves (the parts' excerpts nest their own copies)."""
    return [e for staff in score.findall("Staff") for e in staff.iter(tag)]


def _staff_notes(score: ET.Element, staff_id: str) -> Counter[tuple[int, int]]:
    staff = next(s for s in score.findall("Staff") if s.get("id") == staff_id)
    return Counter((int(n.findtext("string", "-1")) + 1, int(n.findtext("fret", "-1")))
                   for n in staff.iter("Note"))


def test_musescore_keeps_our_frets_from_the_gp5(exports: dict[str, Path]) -> None:
    score = _main_score(_mscore(exports["gp5"], "mscx"))
    parts = score.findall("Part")
    assert [p.findtext("trackName") for p in parts] == ["lead", "rhythm", "bass"]
    for part, name in zip(parts, ("lead", "rhythm", "bass"), strict=True):
        first_staff = part.find("Staff")
        assert first_staff is not None
        assert _staff_notes(score, first_staff.get("id", "")) == _written(name), name
    assert len(_count(score, "Tempo")) == 1
    dynamics = [d.findtext("subtype") for d in _count(score, "Dynamic")]
    assert 1 <= len(dynamics) <= 6, dynamics               # a few marks, not one per note
    assert _mscore(exports["gp5"], "pdf").read_bytes()[:4] == b"%PDF"


def test_musescore_reads_the_musicxml_cleanly(exports: dict[str, Path]) -> None:
    score = _main_score(_mscore(exports["musicxml"], "mscx"))
    assert len(_count(score, "Tempo")) == 1                # one tempo mark, not one per part
    first = [s for s in score.findall("Staff")][0].find("Measure")
    assert first is not None and first.get("len") == "1/4"  # the pickup: one beat, under 4/4
    sigs = {(t.findtext("sigN"), t.findtext("sigD")) for t in _count(score, "TimeSig")}
    assert sigs == {("4", "4")}
    harmonies = [h.findtext("name") or "" for h in _count(score, "Harmony")]
    tuning, notes = _song()[0]["rhythm"]
    expected = [c.name for c in chord_labels([[n.pitch - tuning.capo for n in notes if abs(n.start - t) < 1e-6]
                                              for t in sorted({n.start for n in notes})]) if c is not None]
    assert len(harmonies) == len(expected) == 3
    words = " ".join(t.findtext("text") or "" for t in _count(score, "StaffText"))
    assert "Tuning: E A D G B E (standard), capo 2" in words and "Tuning: E A D G (standard)" in words
    assert _mscore(exports["musicxml"], "pdf").read_bytes()[:4] == b"%PDF"


def test_musescore_reads_the_midi(exports: dict[str, Path]) -> None:
    score = _main_score(_mscore(exports["mid"], "mscx"))
    assert len(score.findall("Part")) == 3

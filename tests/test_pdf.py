"""tab.pdf: the print form of the MusicXML (notation over tab, chord names, tuning line, one
tempo mark), and a clear skip when no engraver is installed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_golden import piece_song

from gateway import artifacts
from gateway.spec import PartResult, SongResult, spec_from_config
from tabagent.exporters import write_musicxml
from tabagent.exporters.pdf import EngraverMissing, find_engraver, print_score, write_pdf
from tabagent.v1 import gateway_pb2


def printed(tmp_path: Path, chords: list[tuple[int, str]]) -> ET.Element:
    parts, rhythm = piece_song("riff_position_7", "bass_walking_g")
    path = tmp_path / "score.musicxml"
    write_musicxml(parts, rhythm, path, title="Band")
    root = ET.parse(path).getroot()
    print_score(root, chords, "guitar: standard (E A D G B E) · bass: standard (E A D G)")
    return root


def test_each_part_gets_a_notation_staff_over_its_tab(tmp_path: Path) -> None:
    root = printed(tmp_path, [(0, "G"), (16, "C/E"), (20, "Am")])
    for part in root.findall("part"):
        attrs = part.find("measure/attributes")
        assert attrs is not None and attrs.findtext("staves") == "2"
        clefs = {c.get("number"): c.findtext("sign") for c in attrs.findall("clef")}
        assert clefs["2"] == "TAB" and clefs["1"] in ("G", "F")
        for measure in part.findall("measure"):
            notes = measure.findall("note")
            staff1 = [n for n in notes if n.findtext("staff") == "1"]
            staff2 = [n for n in notes if n.findtext("staff") == "2"]
            assert len(staff1) == len(staff2) == len(notes) // 2
            # Standard notation has no string/fret; the tab keeps them.
            assert all(n.find("notations/technical") is None for n in staff1)
            assert all(n.find("notations/technical/fret") is not None for n in staff2 if n.find("rest") is None)
            backup = measure.find("backup")
            assert backup is not None
            played = sum(int(n.findtext("duration") or 0) for n in staff1 if n.find("chord") is None)
            assert int(backup.findtext("duration") or 0) == played
    first, second = root.findall("part")
    # Chord names (the exporter's own, or tabagent.chords' when it names none) on staff 1,
    # the tuning stated once per part, every bar numbered, one tempo mark.
    assert first.findall("measure/harmony")
    assert "Tuning:" in "".join(first.itertext()) or "guitar: standard" in "".join(first.itertext())
    assert first.find("measure/print/measure-numbering").text == "measure"  # type: ignore[union-attr]
    assert second.find("measure/direction/direction-type/metronome") is None


def test_chord_names_go_in_when_the_score_names_none(tmp_path: Path) -> None:
    root = printed(tmp_path, [])
    for harmony in root.iter("harmony"):
        for measure in root.iter("measure"):
            if harmony in list(measure):
                measure.remove(harmony)
    print_score(root, [(0, "G"), (16, "C/E"), (20, "Am")], "")
    harmonies = root.findall("part")[0].findall("measure/harmony")
    assert [h.findtext("root/root-step") for h in harmonies] == ["G", "C", "A"]
    assert harmonies[1].findtext("bass/bass-step") == "E" and harmonies[2].findtext("kind") == "minor"


def test_no_engraver_raises_a_clear_error_and_the_song_skips_the_pdf(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABAGENT_ENGRAVER", "no-such-musescore")
    find_engraver.cache_clear()
    try:
        parts, rhythm = piece_song("open_chords_strum")
        with pytest.raises(EngraverMissing, match="MuseScore"):
            write_pdf(parts, rhythm, tmp_path / "tab.pdf")
        spec = spec_from_config(gateway_pb2.ProcessConfig(filename="x.wav"), "0" * 32)
        result = SongResult(spec.song_id, spec, seconds=10.0, rhythm=rhythm)
        for p in spec.parts:
            name = "guitar" if p.name == "guitar" else p.name
            tuning, notes = parts.get(name, (p.tuning, []))
            result.parts[p.name] = PartResult(p, tuning, list(notes))
        written = artifacts.write_all(result, tmp_path / "out")
    finally:
        find_engraver.cache_clear()
    assert "tab.pdf" not in {p.name for p in written} and not (tmp_path / "out" / "tab.pdf").exists()
    assert any(w.startswith("tab.pdf: skipped: no MuseScore") for w in result.warnings)
    assert "tab.pdf: skipped" in (tmp_path / "out" / "result.json").read_text()

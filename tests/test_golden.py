"""Golden files: the ASCII tab and MusicXML of a few reference pieces, byte for byte.

The round-trip tests read exports back with their own parsers, which cannot see a change
in layout; these compare with files a person has looked at. After an intended change to
an exporter, rewrite them and review the diff:

    TABAGENT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evalkit.fingering_corpus import by_name
from tabagent import tuning as tunings
from tabagent.exporters import write_ascii_tab, write_musicxml
from tabagent.notes import Note
from tabagent.rhythm import Rhythm

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("TABAGENT_UPDATE_GOLDEN", "") == "1"


def piece_song(*names: str) -> tuple[dict[str, tuple[tunings.Tuning, list[Note]]], Rhythm]:
    """Pieces of the fingering corpus with their true fingering, as the parts of one song."""
    pieces = [by_name(n) for n in names]
    parts = {p.name: (p.tuning_obj(), p.notes()) for p in pieces}
    seconds = max(n.end for _, notes in parts.values() for n in notes) + 1.0
    return parts, Rhythm.constant(pieces[0].tempo, seconds)


def techniques_song() -> tuple[dict[str, tuple[tunings.Tuning, list[Note]]], Rhythm]:
    """A lead with a hammer-on, a slide, a bend and vibrato, starting on an anacrusis."""
    lead = by_name("pentatonic_box5")
    notes = lead.notes()
    notes[3].technique = "hammer_on"
    notes[7].technique = "slide"
    notes[12].technique = "bend"
    notes[12].pitch_bend = [0.0, 1.0]
    notes[20].technique = "vibrato"
    shifted = [Note(n.pitch, n.start + 0.5, n.end + 0.5, n.velocity, n.string, n.fret, n.technique,
                    pitch_bend=list(n.pitch_bend)) for n in notes]
    seconds = max(n.end for n in shifted) + 1.0
    return {"lead": (lead.tuning_obj(), shifted)}, Rhythm.constant(lead.tempo, seconds, first_downbeat=0.5)


SONGS = {
    "open_chords_strum": lambda: piece_song("open_chords_strum"),
    "drop_d_riff": lambda: piece_song("drop_d_riff"),
    "capo2_open_chords": lambda: piece_song("capo2_open_chords"),
    "band": lambda: piece_song("riff_position_7", "bass_walking_g"),
    "techniques": techniques_song,
}


def check(path: Path, text: str) -> None:
    """`text` is the golden file's content (or becomes it, with TABAGENT_UPDATE_GOLDEN=1)."""
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"{path.name} is missing: run with TABAGENT_UPDATE_GOLDEN=1 to write it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{path.name} changed; if intended, rerun with TABAGENT_UPDATE_GOLDEN=1 and review the diff"


@pytest.mark.parametrize("name", list(SONGS))
def test_ascii_tab_is_the_golden_file(name: str) -> None:
    parts, rhythm = SONGS[name]()
    check(GOLDEN / f"{name}.tab.txt", write_ascii_tab(parts, rhythm, title=name))


@pytest.mark.parametrize("name", list(SONGS))
def test_musicxml_is_the_golden_file(name: str, tmp_path: Path) -> None:
    parts, rhythm = SONGS[name]()
    path = tmp_path / "tab.musicxml"
    write_musicxml(parts, rhythm, path, title=name)
    check(GOLDEN / f"{name}.musicxml", path.read_text(encoding="utf-8"))

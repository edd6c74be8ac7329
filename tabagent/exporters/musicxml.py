"""MusicXML export (tab.musicxml) with one TAB staff per part, readable by music21 and MuseScore.

Each part has a TAB clef and `staff-details` giving the number of strings, the tuning of
each (line 1 = lowest string) and the capo; every note carries its sounding pitch and a
`technical` string (1 = highest, as MusicXML counts) and fret (relative to the capo).
Hammer-ons, pull-offs and slides are drawn from the note they leave to the note they
reach; bends (`bend-alter` in semitones: 0.5, 1, 2 or 3), vibrato and let ring sit on the
note. The tempo is a metronome mark and a `sound` element in the first part only (one
tempo mark per score); bars and time signatures follow the rhythm's grid, and a song
that starts before its first downbeat opens with a real pickup: measure 0, marked
`implicit="yes"`, under the song's own time signature. Each part states its tuning and
capo as words above its first bar (programs that ignore `staff-details` still show
them), and a guitar part names its chords above the beats where they change (`harmony`).

MuseScore 3 reads the pitches, rhythm, tuning words and chord names of this file but
re-fingers the notes itself (its importer ignores `string`, `fret` and `capo`); the
Guitar Pro file keeps the fingering in MuseScore and TuxGuitar (README).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tabagent.exporters.chords import STEPS, Chord, chord_labels
from tabagent.exporters.layout import (
    PROGRAMS,
    Parts,
    choose_subdivision,
    end_step,
    layout,
    legato_source,
)
from tabagent.notes import Note
from tabagent.rhythm import Bar, Grid, Rhythm
from tabagent.techniques import bend_amount
from tabagent.tuning import Tuning, midi_to_note_name

logger = logging.getLogger(__name__)

_STEPS = ("C", "C", "D", "D", "E", "F", "F", "G", "G", "A", "A", "B")
_ALTER = (0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0)
_TYPES = {1: "whole", 2: "half", 4: "quarter", 8: "eighth", 16: "16th", 32: "32nd"}
_DOCTYPE = (
    '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
    '"http://www.musicxml.org/dtds/partwise.dtd">'
)


def _sub(parent: ET.Element, tag: str, text: object | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def _pitch(parent: ET.Element, midi: int) -> None:
    pitch = _sub(parent, "pitch")
    _sub(pitch, "step", _STEPS[midi % 12])
    if _ALTER[midi % 12]:
        _sub(pitch, "alter", _ALTER[midi % 12])
    _sub(pitch, "octave", midi // 12 - 1)


def write_musicxml(
    parts: Parts, rhythm: Rhythm, path: str | Path, title: str = "Tab Agent", subdivision: int | None = None
) -> None:
    """Write a MusicXML 4.0 score with a TAB staff per part.

    Args:
        parts: part name -> (tuning, fingered notes); unfingered notes are skipped.
        rhythm: tempo, metre and downbeats.
        path: the .musicxml file to write.
        title: the work title.
        subdivision: grid steps per beat, also the MusicXML divisions; default sixteenths
            (32nds for faster notes).
    """
    subdivision = choose_subdivision(parts, rhythm, subdivision)
    grid = rhythm.grid(subdivision)
    bars = grid.bars(end_step(parts, grid))
    # Written as it is built, a bar at a time: the whole tree of an hour-long song would
    # hold tens of MB (measured: 31 MiB for 21,600 notes), a bar's is a few kB.
    with open(path, "w", encoding="utf-8") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n{_DOCTYPE}\n<score-partwise version="4.0">')
        for element in _header(parts, title):
            out.write(ET.tostring(element, encoding="unicode"))
        for i, (tuning, notes) in enumerate(parts.values(), start=1):
            out.write(f'<part id="P{i}">')
            for measure in _measures(tuning, notes, grid, bars, subdivision, tempo=i == 1):
                out.write(ET.tostring(measure, encoding="unicode"))
            out.write("</part>")
        out.write("</score-partwise>\n")
    logger.debug("wrote %s: %d parts, %d bars", path, len(parts), len(bars))


def _header(parts: Parts, title: str) -> list[ET.Element]:
    """The score's work, identification and part-list elements."""
    root = ET.Element("score-partwise")
    work = _sub(root, "work")
    _sub(work, "work-title", title)
    ident = _sub(root, "identification")
    encoding = _sub(ident, "encoding")
    _sub(encoding, "software", "Tab Agent")
    part_list = _sub(root, "part-list")
    for i, (name, (tuning, _)) in enumerate(parts.items(), start=1):
        score_part = _sub(part_list, "score-part", id=f"P{i}")
        _sub(score_part, "part-name", name)
        instrument = _sub(score_part, "score-instrument", id=f"P{i}-I1")
        _sub(instrument, "instrument-name", "Electric Bass" if tuning.instrument == "bass" else "Guitar")
        midi = _sub(score_part, "midi-instrument", id=f"P{i}-I1")
        channel = i if i < 10 else i + 1
        _sub(midi, "midi-channel", min(channel, 16))
        _sub(midi, "midi-program", PROGRAMS.get(tuning.instrument, 25) + 1)
    return list(root)


def tuning_text(tuning: Tuning) -> str:
    """The tuning and capo as a player reads them: "Tuning: D A D G B E (drop d), capo 2"."""
    letters = " ".join(midi_to_note_name(p)[:-1] for p in tuning.strings)
    name = (tuning.name or "custom").replace("_", " ")
    capo = f", capo {tuning.capo}" if tuning.capo else ", no capo"
    return f"Tuning: {letters} ({name}){capo}"


def _words(measure: ET.Element, text: str) -> None:
    direction = _sub(measure, "direction", placement="above")
    dtype = _sub(direction, "direction-type")
    _sub(dtype, "words", text)


def _harmony(measure: ET.Element, chord: Chord) -> None:
    harmony = _sub(measure, "harmony", placement="above")
    root = _sub(harmony, "root")
    step, alter = STEPS[chord.root]
    _sub(root, "root-step", step)
    if alter:
        _sub(root, "root-alter", alter)
    kind = _sub(harmony, "kind", chord.shape.kind)
    kind.set("text", chord.shape.suffix)
    if chord.bass != chord.root:
        bass = _sub(harmony, "bass")
        step, alter = STEPS[chord.bass]
        _sub(bass, "bass-step", step)
        if alter:
            _sub(bass, "bass-alter", alter)
    if chord.shape.add:
        degree = _sub(harmony, "degree")
        _sub(degree, "degree-value", chord.shape.add)
        _sub(degree, "degree-alter", 0)
        _sub(degree, "degree-type", "add")


def _measures(tuning: Tuning, notes: Sequence[Note], grid: Grid, bars: list[Bar], subdivision: int,
              tempo: bool = True) -> Iterator[ET.Element]:
    """One part's measures, one at a time (`tempo`: this part carries the tempo mark)."""
    fingered = [n for n in notes if n.string >= 0]
    sources = legato_source(fingered)
    by_id = {id(n): n for n in fingered}
    leaving = {id(src): by_id[dst] for dst, src in sources.items()}
    n_strings = len(tuning.strings)
    pickup = bool(bars) and bars[0].pickup
    previous_sig: tuple[int, int] | None = None
    laid = layout(fingered, grid, bars)
    names = chord_labels([[n.pitch - tuning.capo for n in beat.notes] for beats in laid for beat in beats])
    if tuning.instrument == "bass":
        names = [None] * len(names)
    labels = iter(names)
    for bar, beats in zip(bars, laid, strict=True):
        # A pickup is measure 0 (MuseScore numbers it so too); the first full bar is 1.
        measure = ET.Element("measure", number=str(bar.index if pickup else bar.index + 1))
        if bar.pickup:
            measure.set("implicit", "yes")
        attributes = None
        if bar.index == 0 or bar.time_signature != previous_sig:
            attributes = _sub(measure, "attributes")
            if bar.index == 0:
                _sub(attributes, "divisions", subdivision)
                key = _sub(attributes, "key")
                _sub(key, "fifths", 0)
            time = _sub(attributes, "time")
            _sub(time, "beats", bar.time_signature[0])
            _sub(time, "beat-type", bar.time_signature[1])
            previous_sig = bar.time_signature
        if bar.index == 0 and attributes is not None:
            clef = _sub(attributes, "clef")
            _sub(clef, "sign", "TAB")
            _sub(clef, "line", 5)
            details = _sub(attributes, "staff-details")
            _sub(details, "staff-lines", n_strings)
            for line, open_pitch in enumerate(tuning.strings, start=1):
                tuning_el = _sub(details, "staff-tuning", line=str(line))
                _sub(tuning_el, "tuning-step", _STEPS[open_pitch % 12])
                if _ALTER[open_pitch % 12]:
                    _sub(tuning_el, "tuning-alter", _ALTER[open_pitch % 12])
                _sub(tuning_el, "tuning-octave", open_pitch // 12 - 1)
            if tuning.capo:
                _sub(details, "capo", tuning.capo)
            _words(measure, tuning_text(tuning))
            if tempo:
                direction = _sub(measure, "direction", placement="above")
                dtype = _sub(direction, "direction-type")
                metronome = _sub(dtype, "metronome")
                _sub(metronome, "beat-unit", "quarter")
                _sub(metronome, "per-minute", f"{grid.tempo:g}")
                _sub(direction, "sound", tempo=f"{grid.tempo:g}")
        for beat in beats:
            chord_name = next(labels)
            if chord_name is not None:
                _harmony(measure, chord_name)
            chord: list[Note | None] = [*sorted(beat.notes, key=lambda n: n.pitch)] or [None]
            for k, note in enumerate(chord):
                el = _sub(measure, "note")
                if k:
                    _sub(el, "chord")
                if note is None:
                    _sub(el, "rest")
                else:
                    _pitch(el, note.pitch)
                _sub(el, "duration", beat.value.steps)
                _sub(el, "voice", 1)
                _sub(el, "type", _TYPES[beat.value.denominator])
                if beat.value.dotted:
                    _sub(el, "dot")
                if note is not None:
                    _notations(el, note, n_strings, sources.get(id(note)), leaving.get(id(note)))
        yield measure


def _notations(el: ET.Element, note: Note, n_strings: int, source: Note | None, target: Note | None) -> None:
    notations = _sub(el, "notations")
    technical = _sub(notations, "technical")
    _sub(technical, "string", n_strings - note.string)
    _sub(technical, "fret", note.fret)
    # Arcs: "stop" on the note reached, "start" on the note left.
    if source is not None and "slide" not in note.techniques:
        tag = "hammer-on" if note.pitch > source.pitch else "pull-off"
        _sub(technical, tag, type="stop", number="1")
    if target is not None and "slide" not in target.techniques:
        tag = "hammer-on" if target.pitch > note.pitch else "pull-off"
        _sub(technical, tag, "H" if tag == "hammer-on" else "P", type="start", number="1")
    if "bend" in note.techniques:
        bend = _sub(technical, "bend")
        _sub(bend, "bend-alter", f"{bend_amount(note):g}")
    if "let_ring" in note.techniques:
        _sub(technical, "other-technical", "let ring")
    if source is not None and "slide" in note.techniques:
        _sub(notations, "slide", type="stop", number="1")
    if target is not None and "slide" in target.techniques:
        _sub(notations, "slide", type="start", number="1", **{"line-type": "solid"})
    if "vibrato" in note.techniques:
        ornaments = _sub(notations, "ornaments")
        _sub(ornaments, "wavy-line", type="start")
        _sub(ornaments, "wavy-line", type="stop")


def read_musicxml(path: str | Path) -> dict[str, object]:
    """Read a MusicXML score back with music21.

    Args:
        path: a .musicxml file.

    Returns:
        {"tempo", "parts": {name: {"strings": [open MIDI pitches, lowest first] (from
        staff-tuning), "capo", "notes": [Note]}}}, note times in seconds from the tempo,
        string 0 = lowest, fret relative to the capo.
    """
    import music21

    score: Any = music21.converter.parse(str(path), format="musicxml")
    marks = score.flatten().getElementsByClass(music21.tempo.MetronomeMark)
    tempo = float(marks[0].number) if len(marks) else 120.0
    tunings = _staff_tunings(path)
    parts: dict[str, object] = {}
    for index, part in enumerate(score.parts):
        strings, capo = tunings[index] if index < len(tunings) else ([], 0)
        n = len(strings)
        notes: list[Note] = []
        for element in part.flatten().notes:
            if isinstance(element, music21.harmony.ChordSymbol):   # a chord name, not notes
                continue
            chord_notes = element.notes if element.isChord else [element]
            start = float(element.offset) * 60.0 / tempo
            end = start + float(element.quarterLength) * 60.0 / tempo
            # music21 keeps a chord's technical marks on the chord, in note order.
            chord_strings = [a for a in element.articulations if type(a) is music21.articulations.StringIndication]
            chord_frets = [a for a in element.articulations if type(a) is music21.articulations.FretIndication]
            for k, sub in enumerate(chord_notes):
                own = list(sub.articulations)
                s_marks = [a for a in own if type(a) is music21.articulations.StringIndication]
                f_marks = [a for a in own if type(a) is music21.articulations.FretIndication]
                if not s_marks and k < len(chord_strings):
                    s_marks = [chord_strings[k]]
                if not f_marks and k < len(chord_frets):
                    f_marks = [chord_frets[k]]
                string = n - int(s_marks[0].number) if s_marks else -1
                fret = int(f_marks[0].number) if f_marks else -1
                notes.append(Note(int(sub.pitch.midi), start, end, string=string, fret=fret))
        parts[part.partName or f"P{index + 1}"] = {"strings": strings, "capo": capo, "notes": notes}
    return {"tempo": tempo, "parts": parts}


def _staff_tunings(path: str | Path) -> list[tuple[list[int], int]]:
    """(open pitches lowest first, capo) per part, from staff-details."""
    steps = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
    out: list[tuple[list[int], int]] = []
    for part in ET.parse(str(path)).getroot().iter("part"):
        details = part.find("./measure/attributes/staff-details")
        if details is None:
            out.append(([], 0))
            continue
        strings = []
        for tuning in sorted(details.findall("staff-tuning"), key=lambda t: int(t.get("line", "0"))):
            alter = int(float(tuning.findtext("tuning-alter", "0")))
            octave = int(tuning.findtext("tuning-octave", "0"))
            strings.append(12 * (octave + 1) + steps[tuning.findtext("tuning-step", "C")] + alter)
        out.append((strings, int(details.findtext("capo", "0"))))
    return out

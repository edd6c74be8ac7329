"""tab.pdf: standard notation over tab, in pages, engraved by MuseScore from the MusicXML export.

The MusicXML writer gives each part one TAB staff. For print, each part becomes a two-staff
part (notation above: treble clef an octave down for guitar, bass clef an octave down for
bass; the TAB staff below), with, above the first part, chord names (`<harmony>`, from
tabagent.chords unless the score names chords already) and a line giving each part's
tuning and capo (unless the score states them already); the tempo mark is kept once.
MuseScore 3 (`mscore3`, Debian's
musescore3) converts that to its own format, whose style then asks for A4 pages and every
bar numbered, and engraves the PDF (two runs of well under a second each for a song).

Without MuseScore, `write_pdf` raises `EngraverMissing`; the caller skips the PDF and says
why instead of failing the song.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from tabagent.chords import NAMES, ChordMark
from tabagent.exporters.layout import Parts, choose_subdivision
from tabagent.exporters.musicxml import write_musicxml
from tabagent.rhythm import Rhythm
from tabagent.tuning import Tuning

log = logging.getLogger(__name__)

ENGRAVERS = ("mscore3", "musescore3", "mscore", "musescore")
TIMEOUT = 300.0
# tabagent.chords suffix -> MusicXML harmony kind.
KINDS = {"": "major", "m": "minor", "5": "power", "7": "dominant", "m7": "minor-seventh",
         "maj7": "major-seventh", "sus4": "suspended-fourth", "sus2": "suspended-second",
         "6": "major-sixth", "m6": "minor-sixth", "add9": "major", "dim": "diminished",
         "aug": "augmented", "m7b5": "half-diminished", "dim7": "diminished-seventh"}
# MuseScore style settings: A4, every bar numbered. The MusicXML import sets its own
# measure numbering after a `-S` style file is read, so they go into the converted .mscx.
STYLE = ("<pageWidth>8.27</pageWidth><pageHeight>11.69</pageHeight>"
         "<showMeasureNumber>1</showMeasureNumber><showMeasureNumberOne>1</showMeasureNumberOne>"
         "<measureNumberInterval>1</measureNumberInterval><measureNumberSystem>0</measureNumberSystem>")


class EngraverMissing(RuntimeError):
    """No MuseScore on this machine: tab.pdf cannot be made."""


class EngraverFailed(RuntimeError):
    """MuseScore ran but made no PDF (the message holds its last words)."""


@functools.cache
def find_engraver() -> str | None:
    """The MuseScore command: TABAGENT_ENGRAVER if set, else the first of ENGRAVERS on PATH."""
    configured = os.environ.get("TABAGENT_ENGRAVER", "")
    if configured:
        return configured if shutil.which(configured) else None
    return next((found for name in ENGRAVERS if (found := shutil.which(name))), None)


def write_pdf(parts: Parts, rhythm: Rhythm, path: str | Path, title: str = "Tab Agent",
              chords: Sequence[ChordMark] = (), subdivision: int | None = None) -> None:
    """Engrave `parts` to a PDF at `path`.

    Args:
        parts: part name -> (tuning, fingered notes), in score time (see tabagent.scoretime).
        rhythm: tempo and metre (score time).
        path: the .pdf to write.
        title: the title on the first page.
        chords: chord names in score seconds (shown above the first part).
        subdivision: grid steps per beat (as write_musicxml).

    Raises:
        EngraverMissing: no MuseScore found.
        EngraverFailed: MuseScore failed or timed out.
    """
    engraver = find_engraver()
    if engraver is None:
        raise EngraverMissing("no MuseScore (mscore3) on this machine: install Debian's musescore3 "
                              "(scripts/install.sh does) or set TABAGENT_ENGRAVER")
    subdivision = choose_subdivision(parts, rhythm, subdivision)
    with tempfile.TemporaryDirectory(prefix="tabagent-pdf-") as tmp:
        work = Path(tmp)
        score = work / "score.musicxml"
        write_musicxml(parts, rhythm, score, title=title, subdivision=subdivision)
        step_seconds = 60.0 / float(rhythm.tempo) / subdivision
        marks = [(round(m.start / step_seconds), m.name) for m in chords]
        lines = [_tuning_line(name, tuning) for name, (tuning, _) in parts.items()]
        tree = ET.parse(score)
        print_score(tree.getroot(), marks, " · ".join(lines))
        tree.write(score, encoding="utf-8", xml_declaration=True)
        native = work / "score.mscx"
        _engrave(engraver, score, native, work)
        text = native.read_text(encoding="utf-8")
        native.write_text(text.replace("<Style>", "<Style>" + STYLE, 1), encoding="utf-8")
        out = work / "score.pdf"
        _engrave(engraver, native, out, work)
        shutil.move(str(out), str(path))


def _engrave(engraver: str, source: Path, target: Path, home: Path) -> None:
    """One MuseScore conversion, headless (its settings go to `home`, not the user's)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
           "XDG_CONFIG_HOME": str(home)}
    try:
        done = subprocess.run([engraver, "-o", str(target), str(source)], env=env, capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise EngraverFailed(f"MuseScore took more than {TIMEOUT:.0f} s") from None
    if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EngraverFailed(f"MuseScore exited with {done.returncode} on {source.name}: {' / '.join(tail)}")


def _tuning_line(name: str, tuning: Tuning) -> str:
    """"guitar: drop d (D A D G B E), capo 2"."""
    strings = " ".join(NAMES[p % 12] for p in tuning.strings)
    label = tuning.name.replace("_", " ") if tuning.name and tuning.name != "custom" else "tuning"
    capo = f", capo {tuning.capo}" if tuning.capo else ""
    return f"{name}: {label} ({strings}){capo}"


def print_score(root: ET.Element, chords: Sequence[tuple[int, str]], header: str) -> None:
    """Turn the MusicXML tree into its print form, in place (see the module docstring).

    Args:
        root: `<score-partwise>`.
        chords: (grid step from the score's start, name) of each chord change.
        header: the tuning/capo line shown at the start.
    """
    has_harmony = root.find(".//harmony") is not None
    for index, part in enumerate(root.findall("part")):
        _two_staves(part)
        if index > 0:  # one tempo mark, above the first part
            for measure in part.findall("measure"):
                for direction in measure.findall("direction"):
                    if direction.find("direction-type/metronome") is not None:
                        measure.remove(direction)
        if index == 0:
            _number_every_bar(part)
            if part.find("measure/direction/direction-type/words") is None:
                _words(part, header)
            if not has_harmony and chords:
                _harmonies(part, chords)


def _is_tab_clef(clef: ET.Element) -> bool:
    return (clef.findtext("sign") or "") == "TAB"


def _two_staves(part: ET.Element) -> None:
    """Notation (staff 1) over the TAB staff (staff 2), unless the part has staves already."""
    measures = part.findall("measure")
    if not measures:
        return
    first_attrs = measures[0].find("attributes")
    if first_attrs is None or first_attrs.find("staves") is not None:
        return
    clef = first_attrs.find("clef")
    if clef is None or not _is_tab_clef(clef):
        return
    bass = _is_bass(part)
    staves = ET.Element("staves")
    staves.text = "2"
    children = list(first_attrs)
    first_attrs.insert(children.index(clef), staves)
    clef.set("number", "2")
    notation = ET.Element("clef", number="1")
    ET.SubElement(notation, "sign").text = "F" if bass else "G"
    ET.SubElement(notation, "line").text = "4" if bass else "2"
    ET.SubElement(notation, "clef-octave-change").text = "-1"
    first_attrs.insert(list(first_attrs).index(clef), notation)
    for details in first_attrs.findall("staff-details"):
        details.set("number", "2")
    for measure in measures:
        _split_measure(measure)


def _is_bass(part: ET.Element) -> bool:
    details = part.find("measure/attributes/staff-details/staff-lines")
    return details is not None and (details.text or "").strip() in ("4", "5")


def _split_measure(measure: ET.Element) -> None:
    """Copy the measure's notes to staff 1 (no string/fret), back up, keep them on staff 2."""
    music = [c for c in measure if c.tag in ("note", "forward", "backup")]
    if not music:
        return
    length = 0
    position = 0
    for el in music:
        duration = int(el.findtext("duration") or 0)
        if el.tag == "backup":
            position -= duration
        elif el.tag == "forward" or el.find("chord") is None:
            position += duration
        length = max(length, position)
    anchor = list(measure).index(music[0])
    copies = []
    for el in music:
        dup = copy.deepcopy(el)
        if dup.tag == "note":
            _set_staff(dup, "1")
            notations = dup.find("notations")
            if notations is not None:
                for technical in notations.findall("technical"):
                    notations.remove(technical)
                if len(notations) == 0:
                    dup.remove(notations)
        copies.append(dup)
        if el.tag == "note":
            _set_staff(el, "2")
    backup = ET.Element("backup")
    ET.SubElement(backup, "duration").text = str(length)
    for offset, el in enumerate([*copies, backup]):
        measure.insert(anchor + offset, el)


_NOTE_ORDER = ("grace", "chord", "pitch", "unpitched", "rest", "duration", "tie", "instrument", "voice",
               "type", "dot", "accidental", "time-modification", "stem", "notehead", "notehead-text",
               "staff", "beam", "notations", "lyric", "play")


def _set_staff(note: ET.Element, number: str) -> None:
    """Give a note its `<staff>`, in the place the MusicXML schema orders it."""
    staff = note.find("staff")
    if staff is None:
        staff = ET.Element("staff")
        rank = _NOTE_ORDER.index("staff")
        children = list(note)
        at = next((i for i, c in enumerate(children)
                   if c.tag in _NOTE_ORDER and _NOTE_ORDER.index(c.tag) > rank), len(children))
        note.insert(at, staff)
    staff.text = number


def _number_every_bar(part: ET.Element) -> None:
    """`<print><measure-numbering>measure`: MuseScore numbers every bar, not only each system's first."""
    measure = part.find("measure")
    if measure is None:
        return
    printing = measure.find("print")
    if printing is None:
        printing = ET.Element("print")
        measure.insert(0, printing)
    numbering = printing.find("measure-numbering")
    if numbering is None:
        numbering = ET.SubElement(printing, "measure-numbering")
    numbering.text = "measure"


def _words(part: ET.Element, text: str) -> None:
    """A words direction at the start of the first measure (the tuning and capo line)."""
    measure = part.find("measure")
    if measure is None or not text:
        return
    direction = ET.Element("direction", placement="above")
    words = ET.SubElement(ET.SubElement(direction, "direction-type"), "words", {"font-size": "9"})
    words.text = text
    ET.SubElement(direction, "staff").text = "1"
    children = list(measure)
    at = next((i for i, c in enumerate(children) if c.tag not in ("attributes", "print")), len(children))
    measure.insert(at, direction)


def _harmony(name: str) -> ET.Element:
    """A `<harmony>` for a chord name of tabagent.chords ("Ab", "F#m7", "C/E")."""
    main, _, bass = name.partition("/")
    root, suffix = (main[:2], main[2:]) if len(main) > 1 and main[1] in "#b" else (main[:1], main[1:])
    el = ET.Element("harmony")
    _step(ET.SubElement(el, "root"), "root", root)
    kind = ET.SubElement(el, "kind", text=suffix)
    kind.text = KINDS.get(suffix, "major")
    if bass:
        _step(ET.SubElement(el, "bass"), "bass", bass)
    if suffix == "add9":
        degree = ET.SubElement(el, "degree")
        ET.SubElement(degree, "degree-value").text = "9"
        ET.SubElement(degree, "degree-alter").text = "0"
        ET.SubElement(degree, "degree-type").text = "add"
    return el


def _step(parent: ET.Element, prefix: str, name: str) -> None:
    ET.SubElement(parent, f"{prefix}-step").text = name[0]
    if len(name) > 1:
        ET.SubElement(parent, f"{prefix}-alter").text = "1" if name[1] == "#" else "-1"


def _harmonies(part: ET.Element, chords: Sequence[tuple[int, str]]) -> None:
    """Insert each chord name before the staff-1 note at its step (or the next one)."""
    pending = sorted(chords)
    start = 0   # in divisions, which are the grid's steps (write_musicxml)
    for measure in part.findall("measure"):
        position = 0
        for el in list(measure):
            if el.tag == "backup":
                break  # staff 1 ends here (see _split_measure)
            if el.tag not in ("note", "forward"):
                continue
            chord_note = el.tag == "note" and el.find("chord") is not None
            if not chord_note:
                while pending and pending[0][0] <= start + position:
                    measure.insert(list(measure).index(el), _harmony(pending.pop(0)[1]))
            if not chord_note:
                position += int(el.findtext("duration") or 0)
        start += _measure_length(measure)


def _measure_length(measure: ET.Element) -> int:
    length = position = 0
    for el in measure:
        if el.tag == "backup":
            position -= int(el.findtext("duration") or 0)
        elif el.tag == "forward" or (el.tag == "note" and el.find("chord") is None):
            position += int(el.findtext("duration") or 0)
        length = max(length, position)
    return length

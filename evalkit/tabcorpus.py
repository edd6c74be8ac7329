"""Human-made tabs as reference fingerings: Guitar Pro tracks read into notes with the tabber's string and fret.

The fingering engine is scored against real tabs the way `evalkit.fingering_corpus` scores it
against the idiomatic test pieces: the notes keep the human's string and fret, the
engine gets only pitch, start and end, and agreement counts the notes it places where
the human did. `read_tracks` reads the guitar and bass tracks of a .gp3/.gp4/.gp5 file
(other instruments and percussion are left out by MIDI program), `retuned` moves a
track to another tuning keeping the human's strings, and `score_track` compares an
engine with the human.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from evalkit.scoring import count_collisions
from tabagent import tuning as tunings
from tabagent.notes import Note
from tabagent.tuning import Tuning

logger = logging.getLogger(__name__)

_QUARTER = 960  # Guitar Pro ticks per quarter note
GUITAR_PROGRAMS = range(24, 32)   # General MIDI guitars
BASS_PROGRAMS = range(32, 40)     # General MIDI basses
GP_SUFFIXES = (".gp3", ".gp4", ".gp5")


@dataclass(frozen=True)
class HumanTrack:
    """One guitar or bass track of a human-made tab.

    `notes` are in time order and carry the human's string (0 = lowest) and fret
    (relative to the capo); `tuning` is the track's own, capo included.
    """

    song: str
    name: str
    instrument: str
    tuning: Tuning
    notes: tuple[Note, ...]
    variant: str = "as tabbed"

    @property
    def key(self) -> str:
        """A stable name: song, track and tuning variant."""
        return f"{self.song} / {self.name} / {self.variant}"

    def fingerprint(self) -> str:
        """A digest of the notes and fingering, to tell duplicated tracks apart."""
        digest = hashlib.sha1(repr(self.tuning.strings).encode())
        for n in self.notes:
            digest.update(f"{n.pitch},{n.start:.4f},{n.string},{n.fret};".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class TrackScore:
    """How an engine's fingering of one track compares with the human's."""

    matched: int
    total: int
    collisions: int          # notes sharing a string at once, as the engine outputs them
    written_collisions: int  # the same, with every note at its written length
    wide: int = 0            # chords the engine spreads over more than WIDE_SPAN frets
    human_wide: int = 0      # the same in the human's tab

    @property
    def ratio(self) -> float:
        return self.matched / self.total if self.total else 1.0


def instrument_of(program: int, name: str, strings: Sequence[int]) -> str | None:
    """"guitar", "bass" or None (not a fretted part) from the MIDI program and track name.

    A track named like a guitar or bass part counts even when its sound is another
    instrument's (a guitar tabbed with a koto patch is still a guitar tab).
    """
    lowered = name.lower()
    if program in BASS_PROGRAMS or "bass" in lowered:
        return "bass"
    if program in GUITAR_PROGRAMS or "guitar" in lowered or "gtr" in lowered:
        return "guitar"
    return None


def _tempo_map(song) -> list[tuple[int, float]]:
    """(tick, quarter notes per minute) from the song tempo and every tempo change."""
    changes = {0: float(song.tempo)}
    for track in song.tracks:
        for measure in track.measures:
            for voice in measure.voices:
                for beat in voice.beats:
                    mix = beat.effect.mixTableChange
                    if mix is not None and mix.tempo is not None and mix.tempo.value > 0:
                        changes[beat.start - _QUARTER] = float(mix.tempo.value)
    return sorted(changes.items())


def _seconds(tempo_map: list[tuple[int, float]], tick: int) -> float:
    t, last_tick, bpm = 0.0, 0, tempo_map[0][1]
    for at, value in tempo_map[1:]:
        if at > tick:
            break
        t += (at - last_tick) * 60.0 / bpm / _QUARTER
        last_tick, bpm = at, value
    return t + (tick - last_tick) * 60.0 / bpm / _QUARTER


def read_tracks(path: str | Path, min_notes: int = 10) -> list[HumanTrack]:
    """The guitar and bass tracks of a Guitar Pro file, with the human's fingering.

    Every voice is read; tied notes lengthen the note they continue; dead (muted) notes
    have no pitch and are left out; notes are as long as written. Percussion and
    tracks of other instruments are skipped, and so are tracks with fewer than
    `min_notes` notes.

    Args:
        path: a .gp3, .gp4 or .gp5 file.
        min_notes: the fewest notes a track needs to be kept.

    Returns:
        The tracks, in file order.
    """
    import guitarpro as gp

    path = Path(path)
    song = gp.parse(str(path))
    title = path.stem
    tempo_map = _tempo_map(song)
    out: list[HumanTrack] = []
    for track in song.tracks:
        if track.isPercussionTrack or len(track.strings) < 4:
            continue
        strings = tuple(s.value for s in sorted(track.strings, key=lambda s: -s.number))
        instrument = instrument_of(track.channel.instrument, track.name, strings)
        if instrument is None:
            continue
        n = len(strings)
        capo = int(track.offset or 0)
        notes: list[Note] = []
        sounding: dict[int, Note] = {}  # string -> its last note, which a tie lengthens
        for measure in track.measures:
            for voice in measure.voices:
                for beat in voice.beats:
                    start_tick = beat.start - _QUARTER
                    start = _seconds(tempo_map, start_tick)
                    end = _seconds(tempo_map, start_tick + beat.duration.time)
                    for gp_note in beat.notes:
                        string = n - gp_note.string
                        if not 0 <= string < n:
                            continue
                        if gp_note.type == gp.NoteType.tie:
                            held = sounding.get(string)
                            if held is not None:
                                held.end = max(held.end, end)
                            continue
                        if gp_note.type != gp.NoteType.normal:
                            continue
                        note = Note(strings[string] + capo + gp_note.value, start, end,
                                    gp_note.velocity / 127.0, string, gp_note.value)
                        notes.append(note)
                        sounding[string] = note
        if len(notes) < min_notes:
            continue
        notes.sort(key=lambda x: (x.start, x.pitch, x.string))
        max_fret = max(24, max(x.fret for x in notes))
        name = tunings._name_of(instrument, strings)
        tuning = Tuning(strings, min(capo, 12), min(max_fret + capo, 36), name, instrument)
        track_name = track.name.strip() or f"track {track.number}"
        out.append(HumanTrack(title, track_name, instrument, tuning, tuple(notes)))
    return out


def retuned(track: HumanTrack, strings: Sequence[int], variant: str) -> HumanTrack | None:
    """The track on another instrument tuning, keeping the human's strings.

    A tuning with the same number of strings keeps each note on its string: when every
    string moves by the same interval (D standard from E standard) the frets stay and
    the music moves with the tuning, as when a player tunes down; otherwise the pitches
    stay and each fret moves by its string's change (drop D: frets on the low string
    +2). A tuning with more strings (7-string guitar, 5-string bass) adds them below and
    keeps every note where it was.

    Args:
        track: a track as tabbed.
        strings: the new open strings, lowest first.
        variant: the name to report it under.

    Returns:
        The new track, or None when a note would need a negative fret or leave the MIDI
        range, or the string counts do not fit.
    """
    old = track.tuning.strings
    strings = tuple(strings)
    extra = len(strings) - len(old)
    if extra < 0:
        return None
    if extra > 0 and strings[extra:] != old:
        return None
    deltas = [o - s for s, o in zip(strings[extra:], old, strict=True)]
    uniform = extra == 0 and len(set(deltas)) == 1
    notes = []
    for note in track.notes:
        if uniform:
            pitch, fret = note.pitch - deltas[0], note.fret
        else:
            pitch, fret = note.pitch, note.fret + deltas[note.string]
        if fret < 0 or not 0 <= pitch <= 127:
            return None
        notes.append(replace(note, pitch=pitch, string=note.string + extra, fret=fret))
    max_fret = max([track.tuning.max_fret, *(n.fret + track.tuning.capo for n in notes)])
    if max_fret > 36:
        return None
    name = tunings._name_of(track.instrument, strings)
    tuning = Tuning(strings, track.tuning.capo, max_fret, name, track.instrument)
    return replace(track, tuning=tuning, notes=tuple(notes), variant=variant)


def unique_tracks(tracks: Iterable[HumanTrack]) -> list[HumanTrack]:
    """The tracks without repeats (a song saved in two formats, a doubled track)."""
    seen: set[str] = set()
    out = []
    for track in tracks:
        fp = track.fingerprint()
        if fp not in seen:
            seen.add(fp)
            out.append(track)
    return out


def score_track(track: HumanTrack, engine: Callable[[list[Note], Tuning], object]) -> TrackScore:
    """Finger the track's pitches with `engine` and compare with the human's fingering.

    Args:
        track: the human tab.
        engine: called as engine(notes, tuning); it sets string and fret on the notes
            (and may cut their ends, as `tabagent.fingering.assign` does).

    Returns:
        Matches, notes, and notes sharing a string at once, both as the engine leaves
        them and at their written lengths.
    """
    notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
    engine(notes, track.tuning)
    matched = sum((t.string, t.fret) == (n.string, n.fret) for t, n in zip(track.notes, notes, strict=True))
    written = [Note(t.pitch, t.start, t.end, string=n.string, fret=n.fret)
               for t, n in zip(track.notes, notes, strict=True)]
    return TrackScore(matched, len(notes), count_collisions(notes), count_collisions(written),
                      wide_chords(notes), wide_chords(track.notes))


# Tab files other than Guitar Pro: MusicXML with <technical><string>/<fret> and Songwrite.
MUSICXML_SUFFIXES = (".musicxml", ".xml")
SONGWRITE_SUFFIXES = (".sw.xml",)
_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
WIDE_SPAN = 5  # a chord whose fretted notes span more frets than this needs a 6-fret stretch


def read_file(path: str | Path, min_notes: int = 10) -> list[HumanTrack]:
    """The guitar and bass tracks of a Guitar Pro, MusicXML or Songwrite tab, by suffix.

    Args:
        path: a .gp3/.gp4/.gp5, .musicxml/.xml (tablature: string and fret on each note)
            or .sw.xml (Songwrite) file.
        min_notes: the fewest notes a track needs to be kept.

    Returns:
        The tracks, in file order (none for a file with no tablature).
    """
    name = Path(path).name.lower()
    if name.endswith(SONGWRITE_SUFFIXES):
        return read_songwrite(path, min_notes)
    if name.endswith(MUSICXML_SUFFIXES):
        return read_musicxml(path, min_notes)
    return read_tracks(path, min_notes)


def _track_of(title: str, name: str, instrument: str, strings: tuple[int, ...], capo: int,
              notes: list[Note]) -> HumanTrack:
    notes.sort(key=lambda x: (x.start, x.pitch, x.string))
    max_fret = max(24, max(x.fret for x in notes))
    tuning = Tuning(strings, min(capo, 12), min(max_fret + capo, 36), tunings._name_of(instrument, strings),
                    instrument)
    return HumanTrack(title, name, instrument, tuning, tuple(notes))


def read_musicxml(path: str | Path, min_notes: int = 10) -> list[HumanTrack]:
    """The tablature parts of a MusicXML file, with the tabber's string and fret.

    A part counts when it gives `<staff-tuning>` and its notes carry `<technical>`
    `<string>`/`<fret>`; the pitch is the tab's (open string + capo + fret), since
    guitar notation is often written an octave up. Chords, voices (`<backup>`),
    ties and tempo marks are followed; repeats are not expanded.

    Args:
        path: the .musicxml/.xml file.
        min_notes: the fewest notes a part needs to be kept.

    Returns:
        The parts, in file order.
    """
    import xml.etree.ElementTree as ET

    path = Path(path)
    root = ET.parse(path).getroot()
    title = (root.findtext("movement-title") or root.findtext("work/work-title") or path.stem).strip()
    names = {p.get("id"): (p.findtext("part-name") or "", int(p.findtext("midi-instrument/midi-program") or 25) - 1)
             for p in root.iter("score-part")}
    out: list[HumanTrack] = []
    for part in root.iter("part"):
        tuning: dict[int, int] = {}
        capo = 0
        divisions, tempo = 1, 120.0
        seconds, position = 0.0, 0  # time of the bar start; divisions into the bar
        notes: list[Note] = []
        sounding: dict[int, Note] = {}
        for measure in part.iter("measure"):
            longest = 0
            last_start = 0
            for el in measure:
                if el.tag == "attributes":
                    divisions = int(el.findtext("divisions") or divisions)
                    for st in el.iter("staff-tuning"):
                        octave = int(st.findtext("tuning-octave") or 0)
                        pitch = 12 * (octave + 1) + _STEPS[st.findtext("tuning-step") or "C"]
                        tuning[int(st.get("line") or 0)] = pitch + int(float(st.findtext("tuning-alter") or 0))
                    capo = int(el.findtext("staff-details/capo") or capo)
                elif el.tag in ("direction", "sound"):
                    sound = el if el.tag == "sound" else el.find("sound")
                    if sound is not None and sound.get("tempo"):
                        tempo = float(sound.get("tempo") or tempo)
                elif el.tag == "backup":
                    position -= int(el.findtext("duration") or 0)
                elif el.tag == "forward":
                    position += int(el.findtext("duration") or 0)
                elif el.tag == "note":
                    duration = int(el.findtext("duration") or 0)
                    chord = el.find("chord") is not None
                    start_div = last_start if chord else position
                    if not chord:
                        position += duration
                    last_start = start_div
                    longest = max(longest, position)
                    string_el, fret_el = el.find("notations/technical/string"), el.find("notations/technical/fret")
                    # Grace notes take no time of their own; a rest or a note with no tab is not scored.
                    grace = el.find("grace") is not None
                    if grace or el.find("rest") is not None or string_el is None or fret_el is None or not tuning:
                        continue
                    # <string> 1 is the highest string; <staff-tuning line="1"> the lowest.
                    number, fret = int(string_el.text or 0), int(fret_el.text or 0)
                    line = len(tuning) + 1 - number
                    if line not in tuning:
                        continue
                    beat = 60.0 / tempo / divisions
                    start = seconds + start_div * beat
                    end = start + duration * beat
                    s = line - 1
                    ties = {t.get("type") for t in el.findall("tie")}
                    if "stop" in ties and s in sounding:
                        sounding[s].end = max(sounding[s].end, end)
                        continue
                    note = Note(tuning[line] + capo + fret, start, end, 0.8, s, fret)
                    notes.append(note)
                    sounding[s] = note
            seconds += max(longest, position) * 60.0 / tempo / divisions
            position = 0
        if len(notes) < min_notes or not tuning:
            continue
        strings = tuple(tuning[k] for k in sorted(tuning))
        part_name, program = names.get(part.get("id"), ("", 24))
        instrument = instrument_of(program, part_name, strings) or (
            "bass" if max(strings) <= 52 else "guitar")
        out.append(_track_of(title, part_name.strip() or str(part.get("id")), instrument, strings, capo, notes))
    return out


def read_songwrite(path: str | Path, min_notes: int = 10) -> list[HumanTrack]:
    """The tablature partitions of a Songwrite (.sw.xml) file.

    Songwrite lists strings from the highest down and numbers them from 0 there; times
    are in quarter notes with a tempo per bar.

    Args:
        path: the .sw.xml file.
        min_notes: the fewest notes a partition needs to be kept.

    Returns:
        The partitions, in file order.
    """
    import xml.etree.ElementTree as ET

    path = Path(path)
    root = ET.parse(path).getroot()
    title = (root.findtext("title") or path.stem).strip()
    # Bar starts in quarter notes and their tempi, to turn quarter notes into seconds.
    bars: list[tuple[float, float, float]] = []  # (start quarter, start second, tempo)
    q = t = 0.0
    for bar in root.iter("bar"):
        num, den = (int(x) for x in (bar.get("rythm") or "4/4").split("/"))
        tempo = float(bar.get("tempo") or 120)
        bars.append((q, t, tempo))
        length = num * 4.0 / den
        q, t = q + length, t + length * 60.0 / tempo

    def seconds(quarter: float) -> float:
        start_q, start_t, tempo = bars[0] if bars else (0.0, 0.0, 120.0)
        for bq, bt, btempo in bars:
            if bq > quarter:
                break
            start_q, start_t, tempo = bq, bt, btempo
        return start_t + (quarter - start_q) * 60.0 / tempo

    out: list[HumanTrack] = []
    for k, partition in enumerate(root.iter("partition")):
        view = partition.find("view")
        if view is None or not (view.get("type") or "").startswith("tablature"):
            continue
        high_first = [int(s.get("pitch") or 0) for s in view.iter("string")]
        if len(high_first) < 4:
            continue
        strings = tuple(reversed(high_first))
        capo = int(partition.get("capo") or 0)
        notes: list[Note] = []
        for el in partition.iter("note"):
            sw_string = int(el.get("string") or 0)
            if not 0 <= sw_string < len(strings):
                continue
            s = len(strings) - 1 - sw_string
            pitch = int(el.get("pitch") or 0)
            fret = pitch - strings[s] - capo
            if fret < 0:
                continue
            start = float(el.get("time") or 0)
            end = start + float(el.get("duration") or 0)
            notes.append(Note(pitch, seconds(start), seconds(end), int(el.get("volume") or 204) / 255, s, fret))
        if len(notes) < min_notes:
            continue
        header = (partition.findtext("header") or "").strip() or f"partition {k + 1}"
        program = int(partition.get("instrument") or 24)
        instrument = instrument_of(program, header, strings) or ("bass" if max(strings) <= 52 else "guitar")
        out.append(_track_of(title, f"{header} {k + 1}", instrument, strings, capo, notes))
    return out


def wide_chords(notes: Sequence[Note], span: int = WIDE_SPAN, together: float = 0.035) -> int:
    """Chords (notes struck within `together` seconds) whose fretted notes span more than `span` frets.

    Args:
        notes: fingered notes.
        span: the widest stretch a hand holds (index to pinky, 5 frets at most).
        together: onsets this close (chained) are one chord.

    Returns:
        How many such chords there are.
    """
    placed = sorted((n for n in notes if n.string >= 0), key=lambda n: n.start)
    count = 0
    i = 0
    while i < len(placed):
        j = i + 1
        while j < len(placed) and placed[j].start - placed[j - 1].start <= together:
            j += 1
        fretted = [n.fret for n in placed[i:j] if n.fret > 0]
        if len(fretted) > 1 and max(fretted) - min(fretted) > span:
            count += 1
        i = j
    return count

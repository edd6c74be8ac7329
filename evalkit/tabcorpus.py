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
    return TrackScore(matched, len(notes), count_collisions(notes), count_collisions(written))

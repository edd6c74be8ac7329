"""Guitar Pro 5 export (tab.gp5) with PyGuitarPro, and the reader that checks it.

One track per part with the part's tuning (string 1 = highest, as Guitar Pro counts),
string count, capo (frets are relative to it) and MIDI program; the song's tempo, once;
bars from the rhythm's grid, each a single voice of beats (see
`tabagent.exporters.layout`). Techniques become Guitar Pro effects: hammer-on/pull-off
and slide on the note they leave (as Guitar Pro draws them), bend (its size in quarter
tones, as the format counts: a full bend is 4), vibrato and let ring on the note itself.

What notation programs show from it:

* Pickup: GP5 has no incomplete first bar, so a song that starts before its first
  downbeat gets a full first bar whose rests come first, marked "Pickup" (the way
  Guitar Pro users write one); `read_gp5` takes the padding back off (it is noted in
  the file's notice) so times read back match the audio.
* Dynamics: every note's velocity is one of three levels per bar
  (`tabagent.exporters.dynamics`), so MuseScore writes a dynamic where the playing gets
  louder or softer, not on every note.
* Chords: a guitar beat that strikes a chord carries its name and diagram where the
  chord changes (`tabagent.exporters.chords`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tabagent.errors import BadConfig
from tabagent.exporters import dynamics
from tabagent.exporters.chords import Chord, chord_labels
from tabagent.exporters.layout import (
    PROGRAMS,
    Parts,
    choose_subdivision,
    end_step,
    layout,
    legato_source,
    values,
)
from tabagent.exporters.text import for_codepage
from tabagent.notes import Note
from tabagent.rhythm import Rhythm
from tabagent.techniques import bend_amount

logger = logging.getLogger(__name__)

_QUARTER = 960  # Guitar Pro ticks per quarter note
_VOICE_CHANNELS = [c for c in range(16) if c != 9]
_PICKUP_NOTICE = "tabagent-pickup-ticks: "   # the rests added before a pickup, for read_gp5


def write_gp5(
    parts: Parts, rhythm: Rhythm, path: str | Path, title: str = "Tab Agent", subdivision: int | None = None
) -> None:
    """Write a Guitar Pro 5 file.

    Args:
        parts: part name -> (tuning, fingered notes); unfingered notes are skipped.
        rhythm: tempo, metre and downbeats (the tempo is written as whole BPM).
        path: the .gp5 file to write.
        title: the song title.
        subdivision: grid steps per beat; default sixteenths (32nds for faster notes).

    Raises:
        tabagent.errors.BadConfig: a part has more than 7 strings (the format's limit).
    """
    import guitarpro as gp
    from guitarpro import models as m

    for name, (tuning, _) in parts.items():
        if len(tuning.strings) > 7:
            raise BadConfig(f"Guitar Pro 5 holds at most 7 strings; part {name!r} has {len(tuning.strings)}")
    subdivision = choose_subdivision(parts, rhythm, subdivision)
    grid = rhythm.grid(subdivision)
    bars = grid.bars(end_step(parts, grid))
    step_ticks = _QUARTER // subdivision
    # A pickup fills out its bar with rests first (see the module docstring).
    pad = grid.bar_steps - bars[0].steps if bars and bars[0].pickup else 0
    # The format holds Windows-1252 only: other scripts are spelled in Latin letters.
    song = m.Song(title=for_codepage(title), tempo=int(round(grid.tempo)))
    song.tempoName = "Tab Agent"
    if pad:
        song.notice = [f"{_PICKUP_NOTICE}{pad * step_ticks}"]
    headers = []
    tick = _QUARTER
    for bar in bars:
        num, den = bar.time_signature
        header = m.MeasureHeader(
            number=bar.index + 1, start=tick, timeSignature=m.TimeSignature(num, m.Duration(value=den))
        )
        if bar.pickup:
            header.marker = m.Marker(title="Pickup")
        headers.append(header)
        tick += (bar.steps + (pad if bar.pickup else 0)) * step_ticks
    song.measureHeaders = headers
    song.tracks = []
    for number, (name, (tuning, notes)) in enumerate(parts.items(), start=1):
        channel = _VOICE_CHANNELS[(2 * (number - 1)) % len(_VOICE_CHANNELS)]
        track = m.Track(
            song,
            number=number,
            name=for_codepage(name),
            fretCount=tuning.max_fret,
            offset=tuning.capo,
            strings=[
                m.GuitarString(len(tuning.strings) - i, pitch) for i, pitch in enumerate(tuning.strings)
            ][::-1],
            channel=m.MidiChannel(
                channel=channel,
                effectChannel=_VOICE_CHANNELS[(channel + 1) % len(_VOICE_CHANNELS)],
                instrument=PROGRAMS.get(tuning.instrument, 25),
            ),
        )
        fingered = [n for n in notes if n.string >= 0]
        sources = legato_source(fingered)
        by_id = {id(n): n for n in fingered}
        leaving = {id(src): by_id[dst_id] for dst_id, src in sources.items()}
        n_strings = len(tuning.strings)
        laid = layout(fingered, grid, bars)
        levels = dynamics.bar_levels([[n.velocity for beat in beats for n in beat.notes] for beats in laid])
        names = chord_labels([[n.pitch - tuning.capo for n in beat.notes] for beats in laid for beat in beats])
        if tuning.instrument == "bass":
            names = [None] * len(names)
        labels = iter(names)
        track.measures = []
        for bar, header, beats, level in zip(bars, headers, laid, levels, strict=True):
            measure = m.Measure(track, header)
            voice = measure.voices[0]
            if bar.pickup and pad:
                for value in _rest_values(pad, subdivision):
                    rest = m.Beat(voice, duration=m.Duration(value=value[0], isDotted=value[1]))
                    rest.status = m.BeatStatus.rest
                    voice.beats.append(rest)
            for beat in beats:
                duration = m.Duration(value=beat.value.denominator, isDotted=beat.value.dotted)
                gp_beat = m.Beat(voice, duration=duration)
                chord = next(labels)
                if beat.rest:
                    gp_beat.status = m.BeatStatus.rest
                else:
                    gp_beat.status = m.BeatStatus.normal
                    for note in sorted(beat.notes, key=lambda n: -n.string):
                        gp_beat.notes.append(_gp_note(m, gp_beat, note, n_strings, leaving.get(id(note)),
                                                      dynamics.velocity(level)))
                    if chord is not None:
                        gp_beat.effect.chord = _gp_chord(m, chord, beat.notes, n_strings)
                voice.beats.append(gp_beat)
            track.measures.append(measure)
        song.tracks.append(track)
    gp.write(song, str(path), version=(5, 1, 0))
    logger.debug("wrote %s: %d tracks, %d bars", path, len(song.tracks), len(headers))


def _rest_values(steps: int, subdivision: int) -> list[tuple[int, bool]]:
    """(denominator, dotted) of rests filling `steps` grid steps, longest first."""
    out = []
    table = values(subdivision)
    while steps > 0:
        value = next(v for v in table if v.steps <= steps)
        out.append((value.denominator, value.dotted))
        steps -= value.steps
    return out


def _gp_chord(m, chord: Chord, notes: list[Note], n_strings: int):
    """A Guitar Pro chord (name and diagram) for the notes of a beat."""
    frets = [-1] * n_strings
    for note in notes:
        frets[n_strings - 1 - note.string] = int(note.fret)   # string 1 (highest) first
    fretted = [f for f in frets if f > 0]
    return m.Chord(
        length=n_strings, sharp=True, root=m.PitchClass(chord.root), type=m.ChordType(chord.shape.gp_type),
        extension=m.ChordExtension.none, bass=m.PitchClass(chord.bass), tonality=m.ChordAlteration.perfect,
        add=bool(chord.shape.add), name=chord.name, fifth=m.ChordAlteration.perfect,
        ninth=m.ChordAlteration.perfect, eleventh=m.ChordAlteration.perfect,
        firstFret=min(fretted) if fretted else 1, strings=frets, show=True, newFormat=True,
    )


def _gp_note(m, beat, note: Note, n_strings: int, next_note: Note | None, velocity: int):
    effect = m.NoteEffect()
    if next_note is not None:
        if "slide" in next_note.techniques:
            effect.slides = [m.SlideType.legatoSlideTo]
        else:
            effect.hammer = True
    if "bend" in note.techniques:
        quarters = int(round(2 * bend_amount(note)))       # Guitar Pro counts quarter tones
        effect.bend = m.BendEffect(
            type=m.BendType.bend,
            value=quarters * 25,                            # the file's 1/100 tone
            points=[m.BendPoint(0, 0), m.BendPoint(6, quarters), m.BendPoint(12, quarters)],
        )
    effect.vibrato = "vibrato" in note.techniques
    effect.letRing = "let_ring" in note.techniques
    return m.Note(
        beat,
        value=int(note.fret),
        velocity=velocity,
        string=n_strings - int(note.string),
        effect=effect,
        type=m.NoteType.normal,
    )


def read_gp5(path: str | Path) -> dict[str, object]:
    """Read a Guitar Pro file back into Tab Agent terms.

    Args:
        path: a .gp3/.gp4/.gp5 file.

    Returns:
        {"title", "tempo", "parts": {name: {"strings": [open MIDI pitches, lowest first],
        "capo", "program", "notes": [Note]}}} with note times in seconds from the tempo,
        string 0 = lowest, fret relative to the capo and pitch as sounding.
    """
    import guitarpro as gp

    song = gp.parse(str(path))
    seconds_per_tick = 60.0 / song.tempo / _QUARTER
    pad = next((int(line[len(_PICKUP_NOTICE):]) for line in song.notice if line.startswith(_PICKUP_NOTICE)), 0)
    parts: dict[str, object] = {}
    for track in song.tracks:
        strings = [s.value for s in sorted(track.strings, key=lambda s: -s.number)]
        n = len(strings)
        notes: list[Note] = []
        pending: dict[int, Any] = {}  # string -> Guitar Pro note whose hammer/slide leads on
        for measure in track.measures:
            for voice in measure.voices:
                for beat in voice.beats:
                    start = (beat.start - _QUARTER - pad) * seconds_per_tick
                    end = start + beat.duration.time * seconds_per_tick
                    for gp_note in beat.notes:
                        if gp_note.type != gp.NoteType.normal:
                            continue
                        string = n - gp_note.string
                        note = Note(strings[string] + track.offset + gp_note.value, start, end,
                                    gp_note.velocity / 127.0, string, gp_note.value)
                        src = pending.pop(string, None)
                        if src is not None:
                            if src.effect.slides:
                                note.add_technique("slide")
                            else:
                                note.add_technique("hammer_on" if gp_note.value > src.value else "pull_off")
                        if gp_note.effect.hammer or gp_note.effect.slides:
                            pending[string] = gp_note
                        if gp_note.effect.bend is not None:
                            note.add_technique("bend")
                            quarters = max((p.value for p in gp_note.effect.bend.points), default=0)
                            note.pitch_bend = [0.0, quarters / 2.0]
                        if gp_note.effect.vibrato:
                            note.add_technique("vibrato")
                        if gp_note.effect.letRing:
                            note.add_technique("let_ring")
                        notes.append(note)
        parts[track.name] = {
            "strings": strings,
            "capo": track.offset,
            "program": track.channel.instrument,
            "notes": notes,
        }
    return {"title": song.title, "tempo": song.tempo, "parts": parts}

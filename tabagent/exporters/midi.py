"""Standard MIDI file export (notes.mid): one track per part with its General MIDI program.

A type-1 file: a conductor track with the tempo, time signature and title, then one
track per part on its own channel (never the drum channel), named after the part and
opened with a program change (guitar: steel-string acoustic 25, bass: finger bass 33,
0-based). Notes keep their transcribed times (not quantised) at 480 ticks per quarter.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tabagent.exporters.layout import PROGRAMS, Parts
from tabagent.rhythm import Rhythm

logger = logging.getLogger(__name__)

TICKS_PER_BEAT = 480
_CHANNELS = [c for c in range(16) if c != 9]


def write_midi(parts: Parts, rhythm: Rhythm, path: str | Path, title: str = "Tab Agent") -> None:
    """Write a type-1 MIDI file.

    Args:
        parts: part name -> (tuning, notes); every note is written, fingered or not.
        rhythm: gives the tempo and time signature.
        path: the .mid file to write.
        title: the sequence name in the conductor track.
    """
    import mido

    tempo = float(rhythm.tempo) or 120.0
    ticks_per_second = TICKS_PER_BEAT * tempo / 60.0
    # Text events in UTF-8 (as MuseScore and most DAWs read them): any title or part name.
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, charset="utf-8")
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=title, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0))
    num, den = rhythm.time_signature
    conductor.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(conductor)
    for index, (name, (tuning, notes)) in enumerate(parts.items()):
        channel = _CHANNELS[index % len(_CHANNELS)]
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        track.append(mido.Message("program_change", program=PROGRAMS.get(tuning.instrument, 25), channel=channel, time=0))
        events: list[tuple[int, int, int, int]] = []  # (tick, order, pitch, velocity); offs sort first
        for note in notes:
            on = max(0, round(note.start * ticks_per_second))
            off = max(on + 1, round(note.end * ticks_per_second))
            velocity = int(min(127, max(1, round(note.velocity * 127))))
            events.append((on, 1, note.pitch, velocity))
            events.append((off, 0, note.pitch, 0))
        events.sort()
        now = 0
        for tick, kind, pitch, velocity in events:
            message = "note_on" if kind else "note_off"
            track.append(mido.Message(message, note=pitch, velocity=velocity, channel=channel, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    mid.save(str(path))
    logger.debug("wrote %s: %d tracks", path, len(mid.tracks))

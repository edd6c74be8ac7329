"""Removes guitar notes the guitar stem only heard from the bass (separation bleed), streaming.

Imperfect separation leaves some bass in the guitar stem, and the transcriber then hears
the bass line twice: on its pitch and on its overtones (octave, twelfth). A guitar note
that starts with a bass note (within `tolerance`) is taken for bleed and dropped when it

* has the bass note's pitch, is not clearly louder than it (velocity under
  UNISON_RATIO times the bass note's) and does not ring on well past it (shorter than
  UNISON_LENGTH times its length): a guitar's own note on that pitch is heard in its
  stem at least as strongly as the leftover of the bass, and a guitar's open string
  rings while the bass line (cut short by its next note) has moved on;
* is an octave above it and quiet (velocity under OCTAVE_MAX_VELOCITY); or
* is an octave above it, quieter than the bass note and about as long (within
  MIRROR_LENGTH of its length): an overtone lives and dies with its fundamental, while a
  guitar's own chord tone over that bass note usually rings on. (The same rule a twelfth
  above dropped more of the guitars' own notes than bass overtones on the dev songs.)

and never when it is a chord tone: another guitar note starts with it that no bass note
could have made (not on a bass note's pitch, octave, twelfth or double octave), such as a
power chord's fifth over a bass an octave below or a strum's third. Then the event is the
guitar's, and its root, fifth and octave were played, not heard from the bass.

Where the mix is stereo and the guitar sits apart from the bass (the median position of
the guitar's notes that no bass note starts with is at least STEREO_SPREAD from the bass
note's), position decides instead of loudness and length: a note is bleed when its
partials come from nearer the bass's place in the mix than the guitar's
(`gateway.stereo`).

Measured with bench/family_accuracy.py (dev songs) and bench/chain_accuracy.py
(docs/ACCURACY.md): the chord-tone exemption and the unison ratio keep strummed chords,
power chords and a solo guitar's bass strings (a solo acoustic guitar lost a quarter of
its notes to the old unison rule), while a sparse guitar over a busy bass still loses
most of the bass's echo. The unison length test kept the solo acoustic songs' ringing
bass strings (dev guitar F1 0.89 -> 0.93) without keeping more echo elsewhere.

Guitar batches are held until the bass part has finished the time they cover, so the
filter never needs more than the notes of the last few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gateway.stereo import StereoField
from tabagent.v1 import audio_pb2

TOLERANCE = 0.06        # seconds between onsets that count as "together"
UNISON_RATIO = 1.05     # a unison guitar note louder than this times the bass note is the guitar's
UNISON_LENGTH = 2.0     # ... and so is one that rings this many times longer than the bass note
OCTAVE_MAX_VELOCITY = 0.5
OVERTONES = (12,)       # semitones above the bass where a quiet mirror of it is its overtone
EXPLAINED = (0, 12, 19, 24)   # above a bass note, where its own partials put notes
MIRROR_LENGTH = 0.4     # |guitar length / bass length - 1| under this: "as long"
STEREO_SPREAD = 0.1     # guitar and bass this far apart (pan units): position decides
STEREO_NOTES = 8        # guitar notes measured before the guitar's position is trusted


@dataclass(frozen=True)
class _Bass:
    start: float
    end: float
    pitch: int
    velocity: float


@dataclass
class _Held:
    notes: list[audio_pb2.Note] = field(default_factory=list)
    out_of_range: list[audio_pb2.Note] = field(default_factory=list)
    final_until: float = 0.0
    recent: list[audio_pb2.Note] = field(default_factory=list)   # released, for chord siblings


class BleedFilter:
    """Streams note batches of every part through, dropping guitar notes that double the bass.

    Args:
        instruments: part name -> instrument ("guitar", "bass").
        tolerance: onset distance in seconds for two notes to count as one event.
        stereo: the song's mix, for where notes sit (None: loudness and length only).
    """

    def __init__(self, instruments: dict[str, str], tolerance: float = TOLERANCE,
                 stereo: StereoField | None = None) -> None:
        self.tolerance = tolerance
        self.stereo = stereo
        self._sides: dict[str, list[float]] = {}            # part -> recent positions of its own notes
        self.bass = [p for p, i in instruments.items() if i == "bass"]
        self.upper = [p for p, i in instruments.items() if i != "bass"] if self.bass else []
        self._bass_notes: list[_Bass] = []                  # recent only
        self._bass_final = {p: 0.0 for p in self.bass}
        self._held = {p: _Held() for p in self.upper}
        self.dropped = {p: 0 for p in self.upper}

    @property
    def bass_final_until(self) -> float:
        return min(self._bass_final.values()) if self._bass_final else math.inf

    def add(self, part: str, batch: audio_pb2.NoteBatch) -> list[audio_pb2.NoteBatch]:
        """Take one batch; returns the batches (of any part) that can be released now."""
        if part in self._bass_final:
            self._bass_notes.extend(_Bass(n.start, n.end, n.pitch, n.velocity) for n in batch.notes)
            self._bass_final[part] = max(self._bass_final[part], batch.final_until)
            return [batch, *self._release()]
        if part in self._held:
            held = self._held[part]
            held.notes.extend(batch.notes)
            held.out_of_range.extend(batch.out_of_range)
            held.final_until = max(held.final_until, batch.final_until)
            return self._release()
        return [batch]

    def end(self, part: str) -> list[audio_pb2.NoteBatch]:
        """A part's stream ended: everything it will ever send has been added."""
        if part in self._bass_final:
            self._bass_final[part] = math.inf
        elif part in self._held:
            self._held[part].final_until = math.inf
        return self._release()

    def _partners(self, note: audio_pb2.Note) -> list[_Bass]:
        return [b for b in self._bass_notes if abs(b.start - note.start) <= self.tolerance]

    def _explained(self, note: audio_pb2.Note) -> bool:
        """A bass note starting with it has it among its partials' pitches."""
        return any((note.pitch - b.pitch) in EXPLAINED for b in self._partners(note))

    def _chord_tone(self, note: audio_pb2.Note, held: _Held) -> bool:
        """Another note of the part starts with it that the bass could not have made."""
        return any(other is not note and abs(other.start - note.start) <= self.tolerance
                   and not self._explained(other) for other in (*held.recent, *held.notes))

    def _side(self, part: str) -> float | None:
        """The median position of the part's notes that no bass note starts with."""
        sides = self._sides.get(part, [])
        return float(sorted(sides)[len(sides) // 2]) if len(sides) >= STEREO_NOTES else None

    def _by_position(self, part: str, note: audio_pb2.Note, bass: _Bass) -> bool | None:
        """True/False: the note is / is not the bass's by where it sits; None: no evidence."""
        side = self._side(part)
        if self.stereo is None or side is None:
            return None
        at_bass = self.stereo.pan(bass.pitch, bass.start)
        at_note = self.stereo.pan(note.pitch, note.start)
        if at_bass is None or at_note is None or abs(side - at_bass) < STEREO_SPREAD:
            return None
        return abs(at_note - at_bass) < abs(at_note - side)

    def _doubles_bass(self, part: str, note: audio_pb2.Note, held: _Held) -> bool:
        partners = self._partners(note)
        if not partners:
            if self.stereo is not None:
                pan = self.stereo.pan(note.pitch, note.start)
                if pan is not None:
                    sides = self._sides.setdefault(part, [])
                    sides.append(pan)
                    del sides[:-200]
            return False
        if self._chord_tone(note, held):
            return False
        for bass in partners:
            if note.pitch - bass.pitch in EXPLAINED:
                decided = self._by_position(part, note, bass)
                if decided is not None:
                    return decided
            interval = note.pitch - bass.pitch
            if (interval == 0 and note.velocity < UNISON_RATIO * bass.velocity
                    and note.end - note.start < UNISON_LENGTH * max(bass.end - bass.start, 1e-3)):
                return True
            if interval == 12 and note.velocity < OCTAVE_MAX_VELOCITY:
                return True
            if interval in OVERTONES and note.velocity < bass.velocity:
                length = max(bass.end - bass.start, 1e-3)
                if abs((note.end - note.start) / length - 1.0) < MIRROR_LENGTH:
                    return True
        return False

    def _release(self) -> list[audio_pb2.NoteBatch]:
        horizon = self.bass_final_until - self.tolerance
        out = []
        for part, held in self._held.items():
            ready = [n for n in held.notes if n.start < horizon]
            if not ready and not (held.out_of_range and horizon >= held.final_until):
                continue
            # Decided with every note that starts with them in view (held ones included).
            kept = [n for n in ready if not self._doubles_bass(part, n, held)]
            held.notes = [n for n in held.notes if n.start >= horizon]
            self.dropped[part] += len(ready) - len(kept)
            final = min(held.final_until, horizon)
            oor = [n for n in held.out_of_range if n.start < horizon]
            held.out_of_range = [n for n in held.out_of_range if n.start >= horizon]
            # Later notes look back one tolerance for their chord siblings.
            held.recent = [n for n in (*held.recent, *ready) if n.start >= horizon - 2 * self.tolerance]
            out.append(audio_pb2.NoteBatch(part=part, notes=kept, out_of_range=oor,
                                           final_until=final if math.isfinite(final) else 0.0))
        # A bass note can still match a guitar note that is held, or one that has not
        # arrived yet (it will start at or after that part's final_until).
        earliest = min(
            (min((n.start for n in h.notes), default=h.final_until) for h in self._held.values()),
            default=math.inf,
        )
        if math.isfinite(earliest):
            self._bass_notes = [b for b in self._bass_notes if b.start >= earliest - 2 * self.tolerance]
        return out

"""Removes notes one part heard from another part's stem (separation bleed), streaming.

Imperfect separation leaves some bass in the guitar stem, and the transcriber then hears
the bass line twice: on its pitch and on its overtones (octave, twelfth). A guitar note
that starts with a bass note (within `tolerance`) is taken for bleed and dropped when it

* has the bass note's pitch;
* is an octave above it and quiet (velocity under OCTAVE_MAX_VELOCITY); or
* is an octave or a twelfth above it, quieter than the bass note and about as long
  (within MIRROR_LENGTH of its length): an overtone lives and dies with its
  fundamental, while a guitar's own chord tone over that bass note usually rings on.

Measured with bench/chain_accuracy.py: guitar onset F1 on the Slakh mixes rose from
0.25 to 0.38 with the first two rules and the synthesised mixes gained 0.01-0.02; the
third took the sparse-guitar mixes (Slakh stems, and the same MIDI rendered with a GM
soundfont) from 0.38 to 0.40 and 0.49, the others unchanged (docs/ACCURACY.md).
A guitar doubling the bass in unison on the same beat loses that note: the rarer case.

Guitar batches are held until the bass part has finished the time they cover, so the
filter never needs more than the notes of the last few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tabagent.v1 import audio_pb2

TOLERANCE = 0.06        # seconds between onsets that count as "together"
OCTAVE_MAX_VELOCITY = 0.5
OVERTONES = (12, 19)    # semitones above the bass: octave, twelfth
MIRROR_LENGTH = 0.4     # |guitar length / bass length - 1| under this: "as long"


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


class BleedFilter:
    """Streams note batches of every part through, dropping guitar notes that double the bass.

    Args:
        instruments: part name -> instrument ("guitar", "bass").
        tolerance: onset distance in seconds for two notes to count as one event.
    """

    def __init__(self, instruments: dict[str, str], tolerance: float = TOLERANCE) -> None:
        self.tolerance = tolerance
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

    def _doubles_bass(self, note: audio_pb2.Note) -> bool:
        for bass in self._bass_notes:
            if abs(bass.start - note.start) > self.tolerance:
                continue
            interval = note.pitch - bass.pitch
            if interval == 0 or (interval == 12 and note.velocity < OCTAVE_MAX_VELOCITY):
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
            held.notes = [n for n in held.notes if n.start >= horizon]
            kept = [n for n in ready if not self._doubles_bass(n)]
            self.dropped[part] += len(ready) - len(kept)
            final = min(held.final_until, horizon)
            oor = [n for n in held.out_of_range if n.start < horizon]
            held.out_of_range = [n for n in held.out_of_range if n.start >= horizon]
            out.append(audio_pb2.NoteBatch(part=part, notes=kept, out_of_range=oor,
                                           final_until=final if math.isfinite(final) else 0.0))
        # A bass note can still match a guitar note that is held, or one that has not
        # arrived yet (it will start at or after that part's final_until).
        earliest = min(
            (min((n.start for n in h.notes), default=h.final_until) for h in self._held.values()),
            default=math.inf,
        )
        if math.isfinite(earliest):
            self._bass_notes = [b for b in self._bass_notes if b.start >= earliest - self.tolerance]
        return out

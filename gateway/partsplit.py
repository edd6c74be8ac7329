"""Lead or rhythm: each guitar note heard by both halves of the split stem is kept in one, streamed.

`--parts lead,rhythm` transcribes the guitar stem twice, from its centre and from the
rest (`gateway.stereo_split`); each half has its own fingering. A note heard in both
(the same pitch starting within `tolerance`: a mask is never perfect, and a stem with
no stereo image goes whole to both) stays in one part, decided by, in order:

1. chords: a note struck with at least `chord_size` - 1 others (in either part) is
   rhythm (a lead line is single notes and double stops), unless it is the top of what
   is struck and at least `TOP_GAP` semitones above the rest, in the lead's register:
   a melody note over a chord;
2. stereo: the part whose copy is clearly louder (its share of the two velocities
   beyond `louder`) heard it where it was played;
3. register: at or above `lead_from` (MIDI) lead, below it rhythm.

Notes heard by one half only stay there, but for one case: a chord of `CHORD_SIZE` or
more notes heard only in the lead half, struck with a chord of the rhythm half, is the
rhythm guitar leaking through the centre mask (a lead line does not strum along with
the rhythm part) and is dropped from the lead. Batches of both parts are held until both are
final to a time (the later of a part's notes may still bring its copy of a held note);
`flush` releases the rest at the end of the song. The fingering of each part is the
transcriber's: a dropped copy leaves its part's other notes where they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tabagent.v1 import audio_pb2

TOLERANCE = 0.06      # seconds between two copies' onsets
CHORD_SIZE = 3        # notes struck together that make a chord
CHORD_WINDOW = 0.05   # seconds
LOUDER = 0.6          # a copy's share of both copies' velocity that says "heard here"
LEAD_FROM = 64        # MIDI pitch (E4) from which an undecided note is lead
TOP_GAP = 5           # semitones a melody note stands above the chord under it


@dataclass
class _Held:
    notes: list[audio_pb2.Note] = field(default_factory=list)
    out_of_range: list[audio_pb2.Note] = field(default_factory=list)
    final_until: float = 0.0


class PartSplit:
    """Streams the note batches of a lead and a rhythm part through, each note in one part.

    Args:
        lead: the lead part's name.
        rhythm: the rhythm part's name.
    """

    def __init__(self, lead: str = "lead", rhythm: str = "rhythm", tolerance: float = TOLERANCE,
                 lead_from: int = LEAD_FROM) -> None:
        self.lead, self.rhythm = lead, rhythm
        self.tolerance = tolerance
        self.lead_from = lead_from
        self._held = {lead: _Held(), rhythm: _Held()}
        self._doomed: set[int] = set()           # ids of held copies to drop when released
        self._settled: set[int] = set()          # ids of held notes already decided
        self.moved = {lead: 0, rhythm: 0}       # copies dropped from each part
        self.kept_alone = {lead: 0, rhythm: 0}  # notes only one part heard

    @property
    def parts(self) -> tuple[str, str]:
        return self.lead, self.rhythm

    def add(self, batch: audio_pb2.NoteBatch) -> list[audio_pb2.NoteBatch]:
        """Take one batch (of any part); returns the batches that can be released now."""
        held = self._held.get(batch.part)
        if held is None:
            return [batch]
        held.notes.extend(batch.notes)
        held.out_of_range.extend(batch.out_of_range)
        if batch.final_until > 0:
            held.final_until = max(held.final_until, batch.final_until)
        horizon = min(h.final_until for h in self._held.values()) - 2 * self.tolerance
        return self._release(horizon)

    def flush(self) -> list[audio_pb2.NoteBatch]:
        """End of the song: decide and release everything held."""
        return self._release(math.inf)

    def _release(self, horizon: float) -> list[audio_pb2.NoteBatch]:
        lead, rhythm = self._held[self.lead], self._held[self.rhythm]
        # Notes starting up to a tolerance past the horizon still count as the other copy
        # or as chord members of the notes released.
        near = horizon + self.tolerance + CHORD_WINDOW
        pool = [(self.lead, n) for n in lead.notes if n.start < near] + \
               [(self.rhythm, n) for n in rhythm.notes if n.start < near]
        dropped = self._decide(pool, horizon)
        out = []
        for name, held in ((self.lead, lead), (self.rhythm, rhythm)):
            ready = [n for n in held.notes if n.start < horizon]
            if not ready and not held.out_of_range:
                continue
            held.notes = [n for n in held.notes if n.start >= horizon]
            kept = [n for n in ready if id(n) not in dropped]
            for n in ready:
                self._doomed.discard(id(n))
                self._settled.discard(id(n))
            self.moved[name] += len(ready) - len(kept)
            oor = [n for n in held.out_of_range if n.start < horizon]
            held.out_of_range = [n for n in held.out_of_range if n.start >= horizon]
            final = min(held.final_until, horizon)
            out.append(audio_pb2.NoteBatch(part=name, notes=kept, out_of_range=oor,
                                           final_until=final if math.isfinite(final) else 0.0))
        return out

    def _decide(self, pool: list[tuple[str, audio_pb2.Note]], horizon: float) -> set[int]:
        """ids of the copies to drop, deciding every note starting before `horizon`.

        A note's copy may start just after the horizon: its fate is decided now with the
        note's and remembered (`_doomed`, `_settled`) for when it is released.
        """
        pool = sorted(pool, key=lambda x: x[1].start)
        for i, (part, note) in enumerate(pool):
            if note.start >= horizon or id(note) in self._settled:
                continue
            self._settled.add(id(note))
            twin = None
            for other_part, other in pool[max(0, i - 12) : i + 12]:
                if other_part != part and other.pitch == note.pitch and id(other) not in self._settled \
                        and abs(other.start - note.start) <= self.tolerance:
                    twin = other
                    break
            if twin is None:
                self.kept_alone[part] += 1
                if part == self.lead and self._leaked_chord(note, pool):
                    self._doomed.add(id(note))
                continue
            self._settled.add(id(twin))
            lead, rhythm = (note, twin) if part == self.lead else (twin, note)
            self._doomed.add(id(rhythm) if self._is_lead(lead, rhythm, pool) else id(lead))
        return self._doomed

    def _leaked_chord(self, note: audio_pb2.Note, pool: list[tuple[str, audio_pb2.Note]]) -> bool:
        """A lead note inside a lead chord struck together with the rhythm part."""
        lead = {n.pitch for p, n in pool if p == self.lead and abs(n.start - note.start) <= CHORD_WINDOW}
        rhythm = any(p == self.rhythm and abs(n.start - note.start) <= CHORD_WINDOW for p, n in pool)
        return len(lead) >= CHORD_SIZE and rhythm

    def _is_lead(self, lead: audio_pb2.Note, rhythm: audio_pb2.Note, pool: list[tuple[str, audio_pb2.Note]]) -> bool:
        struck = sorted({n.pitch for _, n in pool if abs(n.start - lead.start) <= CHORD_WINDOW})
        if len(struck) >= CHORD_SIZE:
            on_top = lead.pitch == struck[-1] and lead.pitch - struck[-2] >= TOP_GAP
            return on_top and lead.pitch >= self.lead_from
        total = lead.velocity + rhythm.velocity
        if total > 0:
            share = lead.velocity / total
            if share >= LOUDER:
                return True
            if share <= 1.0 - LOUDER:
                return False
        return lead.pitch >= self.lead_from

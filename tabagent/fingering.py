"""Places notes on strings and frets: never two sounding notes on one string.

`assign` fingers a whole piece; `StreamingFingerer` fingers notes as they arrive and
releases each once no later note can change it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tabagent.notes import Note, sort_notes
from tabagent.tuning import Tuning


@dataclass
class FingeringResult:
    notes: list[Note] = field(default_factory=list)
    out_of_range: list[Note] = field(default_factory=list)

    def extend(self, other: FingeringResult) -> None:
        self.notes.extend(other.notes)
        self.out_of_range.extend(other.out_of_range)


class _Greedy:
    """Chooses, note by note, the free string closest to the current hand position."""

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.busy: list[Note | None] = [None] * len(tuning.strings)
        self.hand = 0.0

    def place(self, note: Note) -> bool:
        positions = self.tuning.positions(note.pitch)
        if not positions:
            return False
        for s, held in enumerate(self.busy):
            if held is not None and held.end <= note.start + 1e-6:
                self.busy[s] = None

        def cost(pos: tuple[int, int]) -> float:
            s, fret = pos
            move = 0.0 if fret == 0 else abs(fret - self.hand)
            return move + 0.05 * fret + (100.0 if self.busy[s] is not None else 0.0)

        s, fret = min(positions, key=cost)
        held = self.busy[s]
        if held is not None:
            # Every playable string is sounding: the note on this string is cut short,
            # as a player's finger would leave it.
            held.end = max(held.start + 1e-3, note.start)
        note.string, note.fret = s, fret
        self.busy[s] = note
        if fret > 0:
            self.hand = 0.7 * self.hand + 0.3 * fret if self.hand else float(fret)
        return True


def assign(notes: Iterable[Note], tuning: Tuning) -> FingeringResult:
    """Finger a whole piece.

    Args:
        notes: notes with pitch/start/end; they are modified in place.
        tuning: the instrument's tuning (capo and max fret included).

    Returns:
        The fingered notes in time order and the notes no string can play.
    """
    engine = _Greedy(tuning)
    result = FingeringResult()
    for note in sort_notes(notes):
        (result.notes if engine.place(note) else result.out_of_range).append(note)
    return result


class StreamingFingerer:
    """Fingers notes arriving in time order; releases them once they are final.

    A note is final when no note that could still arrive starts before it ends, since
    such a note could cut it short on its string.
    """

    def __init__(self, tuning: Tuning) -> None:
        self.engine = _Greedy(tuning)
        self.pending: list[Note] = []

    def push(self, notes: Iterable[Note], final_until: float) -> FingeringResult:
        """Add notes that start before `final_until`; return those now final."""
        out = FingeringResult()
        for note in sort_notes(notes):
            if self.engine.place(note):
                self.pending.append(note)
            else:
                out.out_of_range.append(note)
        keep = []
        for note in self.pending:
            (out.notes if note.end <= final_until else keep).append(note)
        self.pending = keep
        return out

    def flush(self) -> FingeringResult:
        """Release everything still held (end of stream)."""
        out = FingeringResult(notes=self.pending)
        self.pending = []
        return out

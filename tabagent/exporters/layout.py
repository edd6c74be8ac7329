"""Notes laid out in bars of notated beats: what Guitar Pro and MusicXML writers share.

A bar becomes a sequence of beats (one voice): a beat holds the notes starting on one
grid step, or is a rest, and has a duration a score can write (whole to 32nd, plain or
dotted). A note lasts until the next onset, its own end or the bar line, whichever comes
first; gaps are filled with rests. Onsets are never moved beyond the grid quantisation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tabagent.notes import Note
from tabagent.rhythm import Bar, Grid, Rhythm
from tabagent.tuning import Tuning

Parts = Mapping[str, tuple[Tuning, Sequence[Note]]]

# Program numbers (0-based General MIDI) per instrument.
PROGRAMS = {"guitar": 25, "bass": 33}


@dataclass(frozen=True)
class Value:
    """A notated duration: 1 = whole, 2 = half, 4 = quarter ... with an optional dot."""

    denominator: int
    dotted: bool
    steps: int


@dataclass
class Beat:
    """One notated beat of a bar: notes starting together (empty = rest)."""

    step: int                 # steps from the bar's start
    value: Value
    notes: list[Note] = field(default_factory=list)

    @property
    def rest(self) -> bool:
        return not self.notes


def values(subdivision: int) -> list[Value]:
    """Every writable duration on a grid of `subdivision` steps per quarter, longest first."""
    out = []
    for denominator in (1, 2, 4, 8, 16, 32):
        steps = 4 * subdivision / denominator
        if steps >= 1 and steps == int(steps):
            out.append(Value(denominator, False, int(steps)))
            if steps * 1.5 == int(steps * 1.5) and denominator < 32:
                out.append(Value(denominator, True, int(steps * 1.5)))
    return sorted(out, key=lambda v: -v.steps)


def _fill(length: int, table: list[Value]) -> list[Value]:
    """Durations adding up to `length` steps, longest first."""
    out = []
    while length > 0:
        value = next(v for v in table if v.steps <= length)
        out.append(value)
        length -= value.steps
    return out


def note_steps(notes: Sequence[Note], grid: Grid) -> list[tuple[int, int, Note]]:
    """(start step, end step, note) per note; every note at least one step long.

    Two notes on one string never share a step: a later one that would land on a taken
    step moves to the next free step (only notes faster than the grid need this).
    """
    out = []
    taken: set[tuple[int, int]] = set()
    for note in sorted(notes, key=lambda n: (n.start, n.string, n.pitch)):
        a = grid.step_of(note.start)
        while note.string >= 0 and (note.string, a) in taken:
            a += 1
        taken.add((note.string, a))
        out.append((a, max(a + 1, grid.step_of(note.end)), note))
    return sorted(out, key=lambda x: (x[0], x[2].string, x[2].pitch))


def choose_subdivision(parts: Parts, rhythm: Rhythm, subdivision: int | None = None) -> int:
    """Steps per beat for an export: `subdivision` if given, else sixteenths, or 32nds when
    two notes on one string would otherwise share a sixteenth."""
    if subdivision is not None:
        return subdivision
    grid = rhythm.grid(4)
    for _, notes in parts.values():
        seen: set[tuple[int, int]] = set()
        for note in notes:
            key = (note.string, grid.step_of(note.start))
            if note.string >= 0 and key in seen:
                return 8
            seen.add(key)
    return 4


def end_step(parts: Parts, grid: Grid) -> int:
    """One past the last step any part sounds."""
    last = 0
    for _, notes in parts.values():
        for a, b, _note in note_steps(notes, grid):
            last = max(last, b, a + 1)
    return last


def layout(notes: Sequence[Note], grid: Grid, bars: Sequence[Bar]) -> list[list[Beat]]:
    """The beats of every bar for one part.

    Args:
        notes: the part's notes (fingered or not).
        grid: the grid the notes are quantised to.
        bars: the bars to fill (from `grid.bars`).

    Returns:
        One list of beats per bar, covering each bar exactly.
    """
    table = values(grid.subdivision)
    by_step: dict[int, list[tuple[int, Note]]] = defaultdict(list)
    for a, b, note in note_steps(notes, grid):
        by_step[a].append((b, note))
    out: list[list[Beat]] = []
    for bar in bars:
        lo, hi = bar.start_step, bar.start_step + bar.steps
        onsets = sorted(s for s in by_step if lo <= s < hi)
        beats: list[Beat] = []
        cursor = lo
        for i, step in enumerate(onsets):
            if step > cursor:
                beats.extend(_rests(cursor, step, lo, table))
            nxt = onsets[i + 1] if i + 1 < len(onsets) else hi
            group = by_step[step]
            sound_end = min(nxt, max(b for b, _ in group))
            value = next(v for v in table if v.steps <= sound_end - step)
            beats.append(Beat(step - lo, value, [n for _, n in group]))
            cursor = step + value.steps
            if cursor < nxt:
                beats.extend(_rests(cursor, nxt, lo, table))
                cursor = nxt
        if cursor < hi:
            beats.extend(_rests(cursor, hi, lo, table))
        out.append(beats)
    return out


def _rests(a: int, b: int, bar_start: int, table: list[Value]) -> list[Beat]:
    beats = []
    step = a
    for value in _fill(b - a, table):
        beats.append(Beat(step - bar_start, value))
        step += value.steps
    return beats


def legato_source(notes: Sequence[Note]) -> dict[int, Note]:
    """For each note marked hammer-on/pull-off/slide, the earlier note on its string it leaves.

    Returns:
        id(destination note) -> source note.
    """
    last: dict[int, Note] = {}
    out: dict[int, Note] = {}
    for note in sorted(notes, key=lambda n: (n.start, n.string)):
        prev = last.get(note.string)
        if prev is not None and any(t in note.techniques for t in ("hammer_on", "pull_off", "slide")):
            out[id(note)] = prev
        last[note.string] = note
    return out
